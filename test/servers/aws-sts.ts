import { createHash, randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'

/**
 * The STS half of the AWS test server (awsQuery: a form-encoded `POST /`, XML answers):
 * `AssumeRole` and `GetCallerIdentity`, both SigV4-verified for service `sts`, and
 * `AssumeRoleWithWebIdentity`, which real STS takes unsigned (the web identity token is the
 * proof). Shapes follow the STS API reference (`2011-06-15`).
 */

export const ACCOUNT = '123456789012'

export interface StsSession {
  accessKeyId: string
  secretAccessKey: string
  sessionToken: string
  roleArn: string
  sessionName: string
  /** `assume-role` (signed AssumeRole) or `web-identity` (AssumeRoleWithWebIdentity). */
  via: 'assume-role' | 'web-identity'
}

export interface StsOptions {
  /** Role ARN → required ExternalId (or none), for AssumeRole. */
  roles?: Record<string, { externalId?: string; durationSeconds?: number }> | undefined
  /** Role ARN → the one web identity token (a service-account JWT, as in IRSA) that may assume it. */
  webIdentityRoles?: Record<string, { token: string }> | undefined
}

type Fail = (res: ServerResponse, status: number, type: string, message: string) => void

export interface StsDeps {
  options: StsOptions
  /** Verifies SigV4 for `sts`; answers the error itself and returns the access key id, or undefined. */
  authenticate(req: IncomingMessage, res: ServerResponse, body: Buffer, service: 'sts', fail: Fail): Promise<string | undefined>
  /** Register session keys so that later signed requests are accepted until they expire. */
  accept(creds: { accessKeyId: string; secretAccessKey: string; sessionToken: string; expiresAt: number }): void
  /** Session keys issued so far (also read to name an assumed role's caller). */
  sessions: StsSession[]
}

interface Entry {
  target: string
  secretId: string
  accessKeyId: string | undefined
}

const NS = 'https://sts.amazonaws.com/doc/2011-06-15/'

function xmlEscape(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`)
}

function sendXml(res: ServerResponse, status: number, xml: string): void {
  res.writeHead(status, { 'content-type': 'text/xml', 'content-length': String(Buffer.byteLength(xml)), 'x-amzn-requestid': randomUUID(), date: new Date().toUTCString() })
  res.end(xml)
}

/** STS's error shape; the Secrets Manager names of signature failures become STS's own codes (and 403). */
export function stsFail(res: ServerResponse, status: number, type: string, message: string): void {
  const code = type === 'UnrecognizedClientException' ? 'InvalidClientTokenId' : type === 'InvalidSignatureException' ? 'SignatureDoesNotMatch' : type
  const httpStatus = status === 400 && (code === 'InvalidClientTokenId' || code === 'SignatureDoesNotMatch') ? 403 : status
  sendXml(
    res,
    httpStatus,
    `<ErrorResponse xmlns="${NS}"><Error><Type>Sender</Type><Code>${code}</Code><Message>${xmlEscape(message)}</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`,
  )
}

/** A stable IAM unique id (`AIDA…` user, `AROA…` role) derived from a name. */
function uniqueId(prefix: 'AIDA' | 'AROA', name: string): string {
  return prefix + createHash('sha256').update(name).digest('hex').slice(0, 17).toUpperCase()
}

function issue(deps: StsDeps, roleArn: string, sessionName: string, seconds: number, via: StsSession['via']) {
  const creds = {
    accessKeyId: 'ASIA' + randomUUID().replace(/-/g, '').slice(0, 16).toUpperCase(),
    secretAccessKey: randomUUID() + randomUUID(),
    sessionToken: 'FwoGZXIvYXdzE' + randomUUID().replace(/-/g, ''),
  }
  const expiresAt = Date.now() + seconds * 1000
  deps.accept({ ...creds, expiresAt })
  deps.sessions.push({ ...creds, roleArn, sessionName, via })
  const roleName = roleArn.split('/').pop() ?? 'role'
  const credentialsXml =
    `<Credentials><AccessKeyId>${creds.accessKeyId}</AccessKeyId><SecretAccessKey>${creds.secretAccessKey}</SecretAccessKey>` +
    `<SessionToken>${creds.sessionToken}</SessionToken><Expiration>${new Date(expiresAt).toISOString()}</Expiration></Credentials>`
  const userXml =
    `<AssumedRoleUser><AssumedRoleId>${uniqueId('AROA', roleArn)}:${xmlEscape(sessionName)}</AssumedRoleId>` +
    `<Arn>arn:aws:sts::${ACCOUNT}:assumed-role/${xmlEscape(roleName)}/${xmlEscape(sessionName)}</Arn></AssumedRoleUser>`
  return { credentialsXml, userXml }
}

const SESSION_NAME = /^[\w+=,.@-]{2,64}$/

/** Handle one STS request (the caller has checked the form content type). */
export async function handleSts(deps: StsDeps, req: IncomingMessage, res: ServerResponse, body: Buffer, entry: Entry): Promise<void> {
  const form = new URLSearchParams(body.toString('utf8'))
  const action = form.get('Action') ?? ''
  entry.target = `sts.${action}`
  const roleArn = form.get('RoleArn') ?? ''
  entry.secretId = action === 'GetCallerIdentity' ? 'GetCallerIdentity' : `${action} ${roleArn}`
  if (form.get('Version') !== '2011-06-15') return stsFail(res, 400, 'InvalidAction', `Could not find operation ${action} for version ${form.get('Version') ?? '(none)'}`)

  if (action === 'AssumeRoleWithWebIdentity') return webIdentity(deps, res, form, roleArn)

  const akid = await deps.authenticate(req, res, body, 'sts', stsFail)
  if (!akid) return
  entry.accessKeyId = akid
  const requestId = `<ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata>`

  if (action === 'GetCallerIdentity') {
    // Never denied by policy: any valid signature learns who it is.
    const session = deps.sessions.find((s) => s.accessKeyId === akid)
    const roleName = session?.roleArn.split('/').pop() ?? 'role'
    const arn = session ? `arn:aws:sts::${ACCOUNT}:assumed-role/${roleName}/${session.sessionName}` : `arn:aws:iam::${ACCOUNT}:user/latchkey-test`
    const userId = session ? `${uniqueId('AROA', session.roleArn)}:${session.sessionName}` : uniqueId('AIDA', akid)
    return sendXml(
      res,
      200,
      `<GetCallerIdentityResponse xmlns="${NS}"><GetCallerIdentityResult><Arn>${xmlEscape(arn)}</Arn><UserId>${xmlEscape(userId)}</UserId>` +
        `<Account>${ACCOUNT}</Account></GetCallerIdentityResult>${requestId}</GetCallerIdentityResponse>`,
    )
  }

  if (action !== 'AssumeRole') return stsFail(res, 400, 'InvalidAction', `Could not find operation ${action}`)
  const role = deps.options.roles?.[roleArn]
  const sessionName = form.get('RoleSessionName') ?? ''
  if (!role || (role.externalId !== undefined && form.get('ExternalId') !== role.externalId)) {
    return stsFail(res, 403, 'AccessDenied', `User: arn:aws:iam::${ACCOUNT}:user/test is not authorized to perform: sts:AssumeRole on resource: ${roleArn}`)
  }
  if (!SESSION_NAME.test(sessionName)) return stsFail(res, 400, 'ValidationError', 'RoleSessionName is invalid')
  const { credentialsXml, userXml } = issue(deps, roleArn, sessionName, Number(form.get('DurationSeconds') ?? role.durationSeconds ?? 3600), 'assume-role')
  sendXml(res, 200, `<AssumeRoleResponse xmlns="${NS}"><AssumeRoleResult>${credentialsXml}${userXml}</AssumeRoleResult>${requestId}</AssumeRoleResponse>`)
}

/** AssumeRoleWithWebIdentity: unsigned; the token must be the one the role trusts. */
function webIdentity(deps: StsDeps, res: ServerResponse, form: URLSearchParams, roleArn: string): void {
  const role = deps.options.webIdentityRoles?.[roleArn]
  const token = form.get('WebIdentityToken') ?? ''
  const sessionName = form.get('RoleSessionName') ?? ''
  if (token.length < 4) return stsFail(res, 400, 'ValidationError', "1 validation error detected: Value at 'webIdentityToken' failed to satisfy constraint: Member must have length greater than or equal to 4")
  if (!SESSION_NAME.test(sessionName)) return stsFail(res, 400, 'ValidationError', 'RoleSessionName is invalid')
  if (!role) return stsFail(res, 403, 'AccessDenied', 'Not authorized to perform sts:AssumeRoleWithWebIdentity')
  if (token !== role.token) return stsFail(res, 400, 'InvalidIdentityToken', "The ID Token provided is not a valid JWT. (You may see this error if you sent an Access Token)")
  const { credentialsXml, userXml } = issue(deps, roleArn, sessionName, Number(form.get('DurationSeconds') ?? 3600), 'web-identity')
  sendXml(
    res,
    200,
    `<AssumeRoleWithWebIdentityResponse xmlns="${NS}"><AssumeRoleWithWebIdentityResult>` +
      `<SubjectFromWebIdentityToken>system:serviceaccount:pipelines:latchkey</SubjectFromWebIdentityToken><Audience>sts.amazonaws.com</Audience>` +
      `${userXml}${credentialsXml}<Provider>arn:aws:iam::${ACCOUNT}:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE</Provider>` +
      `</AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>`,
  )
}
