import type { GetSecretValueCommandInput, SecretsManagerClientConfig } from '@aws-sdk/client-secrets-manager'
import { z } from 'zod'
import { duration } from '../values/schema.ts'
import { ProviderError, type ProviderErrorCode } from '../errors.ts'
import { raceAbort } from './abortable.ts'
import type { ProviderCheck, ProviderFactory, SecretProvider } from './provider.ts'
import { parseRetryAfter } from './retry-after.ts'
import { SecretValue } from './secret-value.ts'

const optionsSchema = z
  .object({
    type: z.literal('aws'),
    /** AWS region of the secrets; else `AWS_REGION`, else `AWS_DEFAULT_REGION`. */
    region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, 'an AWS region such as eu-west-1').optional(),
    /** Secrets Manager endpoint (VPC endpoint, FIPS, a local test server); else `AWS_ENDPOINT_URL_SECRETS_MANAGER`. */
    endpoint: z.url({ protocol: /^https?$/ }).optional(),
    /** A role to assume (STS AssumeRole) with the default credentials before reading secrets. */
    roleArn: z.string().regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/.+$/, 'an IAM role ARN').optional(),
    /** Session name for the assumed role (shows in CloudTrail). Default `latchkey`. */
    roleSessionName: z.string().regex(/^[\w+=,.@-]{2,64}$/).default('latchkey'),
    /** ExternalId the role's trust policy requires, if any. */
    externalId: z.string().min(2).max(1224).optional(),
    /** STS endpoint for `roleArn`; else `AWS_ENDPOINT_URL_STS`, else the regional STS endpoint. */
    stsEndpoint: z.url({ protocol: /^https?$/ }).optional(),
    /** Staging label read when a credential sets no `version` (default: AWSCURRENT). */
    versionStage: z.string().min(1).max(256).optional(),
    /** Upper bound of one HTTP call (socket); latchkey's per-fetch timeout answers earlier. Default 30s. */
    requestTimeout: duration.default(30_000),
  })
  .strict()

type AwsOptions = z.infer<typeof optionsSchema>
type StaticKeys = { accessKeyId: string; secretAccessKey: string; sessionToken?: string }
type Credentials = NonNullable<SecretsManagerClientConfig['credentials']>
/** What a credentials provider resolves to (keys, optional session token and expiry). */
type ResolvedCredentials = Awaited<ReturnType<Extract<Credentials, (...args: never[]) => unknown>>>

/** A fatal decoder: a SecretBinary that is not UTF-8 text is refused rather than mangled. */
const utf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * Split a credential's `version`: `stage:AWSPREVIOUS` names a staging label; anything
 * else is a VersionId. Without one, the provider's `versionStage` (or AWSCURRENT) is read.
 */
function versionInput(version: string | undefined, defaultStage: string | undefined): Pick<GetSecretValueCommandInput, 'VersionId' | 'VersionStage'> {
  if (version === undefined) return defaultStage === undefined ? {} : { VersionStage: defaultStage }
  if (version.startsWith('stage:')) return { VersionStage: version.slice('stage:'.length) }
  return { VersionId: version }
}

/**
 * `aws`: AWS Secrets Manager through the official SDK (loaded on first `create`).
 * Ref = SecretId (name or ARN). `SecretString` is returned as is (JSON secrets are
 * picked apart by `field` centrally); `SecretBinary` must be UTF-8 text. Credentials:
 * `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`(/`AWS_SESSION_TOKEN`) from the daemon's
 * env when set, else the SDK's default chain (profile, IRSA web identity, container
 * and instance roles); `roleArn` is assumed on top. SDK retries are off: the daemon
 * owns timeouts and retries.
 */
export const awsProvider: ProviderFactory<typeof optionsSchema> = {
  type: 'aws',
  optionsSchema,
  async create(options: AwsOptions, ctx): Promise<SecretProvider> {
    const where = `aws provider ${ctx.name}`
    const region = options.region ?? ctx.env.AWS_REGION ?? ctx.env.AWS_DEFAULT_REGION
    if (!region) throw new ProviderError('provider_config', `${where}: no AWS region (set region, AWS_REGION or AWS_DEFAULT_REGION)`, { retryable: false })
    const endpoint = options.endpoint ?? ctx.env.AWS_ENDPOINT_URL_SECRETS_MANAGER ?? ctx.env.AWS_ENDPOINT_URL
    const { SecretsManagerClient, GetSecretValueCommand, ListSecretsCommand } = await import('@aws-sdk/client-secrets-manager')

    // The daemon's env is authoritative for static keys; other sources come from the SDK's chain.
    const envKeys: StaticKeys | undefined =
      ctx.env.AWS_ACCESS_KEY_ID && ctx.env.AWS_SECRET_ACCESS_KEY
        ? { accessKeyId: ctx.env.AWS_ACCESS_KEY_ID, secretAccessKey: ctx.env.AWS_SECRET_ACCESS_KEY, ...(ctx.env.AWS_SESSION_TOKEN ? { sessionToken: ctx.env.AWS_SESSION_TOKEN } : {}) }
        : undefined
    let credentials: Credentials | undefined = envKeys
    const stsEndpoint = options.stsEndpoint ?? ctx.env.AWS_ENDPOINT_URL_STS ?? ctx.env.AWS_ENDPOINT_URL
    if (options.roleArn) {
      const { fromTemporaryCredentials } = await import('@aws-sdk/credential-providers')
      credentials = fromTemporaryCredentials({
        params: { RoleArn: options.roleArn, RoleSessionName: options.roleSessionName, ...(options.externalId ? { ExternalId: options.externalId } : {}) },
        ...(envKeys ? { masterCredentials: envKeys } : {}),
        clientConfig: { region, maxAttempts: 1, ...(stsEndpoint ? { endpoint: stsEndpoint } : {}) },
      })
    }
    const config: SecretsManagerClientConfig = {
      region,
      maxAttempts: 1,
      ...(endpoint ? { endpoint } : {}),
      ...(credentials ? { credentials } : {}),
      requestHandler: { requestTimeout: options.requestTimeout, connectionTimeout: Math.min(10_000, options.requestTimeout), throwOnRequestTimeout: true },
    }
    const client = new SecretsManagerClient(config)
    const identity = options.roleArn ? `assumed role ${options.roleArn}` : undefined

    /** The caller's ARN from STS (doctor only; the STS client is loaded on first use). */
    const callerIdentity = async (creds: ResolvedCredentials, signal: AbortSignal): Promise<{ arn?: string; error?: string }> => {
      const { STSClient, GetCallerIdentityCommand } = await import('@aws-sdk/client-sts')
      const sts = new STSClient({ region, maxAttempts: 1, credentials: creds, ...(stsEndpoint ? { endpoint: stsEndpoint } : {}), requestHandler: config.requestHandler })
      try {
        const out = await sts.send(new GetCallerIdentityCommand({}), { abortSignal: signal })
        // An ARN is no secret, but it is printed: accept only its documented shape.
        return typeof out.Arn === 'string' && /^arn:aws[a-z-]*:(iam|sts)::\d{12}:[\w+=,.@/-]{1,512}$/.test(out.Arn) ? { arn: out.Arn } : { error: 'no ARN in the answer' }
      } catch (err) {
        const mapped = mapAwsError(err, 'GetCallerIdentity', where)
        return { error: `${mapped.code} (${mapped.providerCode ?? 'no code'})` }
      } finally {
        sts.destroy()
      }
    }

    return {
      type: 'aws',
      async fetch(ref, opts) {
        if (ref === '' || ref.length > 2048) throw new ProviderError('provider_config', `${where}: ref must be a secret name or ARN`, { retryable: false })
        const input: GetSecretValueCommandInput = { SecretId: ref, ...versionInput(opts.version, options.versionStage) }
        const what = `secret ${ref}${opts.version ? ` version ${opts.version}` : ''}`
        if (opts.signal.aborted) throw mapAwsError({ name: 'AbortError' }, what, where)
        let out
        try {
          out = await client.send(new GetSecretValueCommand(input), { abortSignal: opts.signal })
        } catch (err) {
          throw mapAwsError(err, what, where)
        }
        if (typeof out.SecretString === 'string') return new SecretValue(out.SecretString, out.VersionId)
        if (out.SecretBinary instanceof Uint8Array) {
          let text: string
          try {
            text = utf8.decode(out.SecretBinary)
          } catch {
            throw new ProviderError('invalid_secret', `${where}: ${what} is SecretBinary that is not UTF-8 text`)
          }
          return new SecretValue(text, out.VersionId)
        }
        throw new ProviderError('invalid_secret', `${where}: ${what} has neither SecretString nor SecretBinary`)
      },
      async check(signal): Promise<ProviderCheck> {
        const aborted = () => Object.assign(new Error('aborted'), { name: 'AbortError' })
        const resolve = client.config.credentials
        let creds: ResolvedCredentials
        try {
          creds = await raceAbort(() => resolve(), signal, aborted)
        } catch (err) {
          // Nothing was sent to AWS (unless the chain itself called STS or a metadata endpoint).
          const mapped = mapAwsError(err, 'credentials', where)
          return { reachable: mapped.code !== 'provider_unavailable' && mapped.code !== 'provider_timeout', authenticated: false, detail: `${mapped.message}; Secrets Manager not contacted` }
        }
        const at = `region ${region}${endpoint ? `, endpoint ${new URL(endpoint).origin}` : ''}`
        // A signed ListSecrets of one entry proves Secrets Manager answers and accepts the
        // signature without reading a value; AccessDeniedException (least privilege grants
        // no list) proves the same, since IAM authenticates before it authorises.
        try {
          await client.send(new ListSecretsCommand({ MaxResults: 1 }), { abortSignal: signal })
        } catch (err) {
          const mapped = mapAwsError(err, 'ListSecrets', where)
          if (mapped.providerCode?.startsWith('AccessDeniedException') !== true) {
            return { reachable: mapped.code !== 'provider_unavailable' && mapped.code !== 'provider_timeout', authenticated: mapped.code !== 'provider_auth_failed' && mapped.code !== 'provider_timeout' && mapped.code !== 'provider_unavailable', detail: `${at}; ${mapped.message}` }
          }
        }
        // Who we are: STS GetCallerIdentity needs no permission. STS is another endpoint (a
        // private VPC may not reach it), so its failure only loses the name.
        const who = await callerIdentity(creds, signal)
        const kind = creds.sessionToken ? 'temporary credentials' : 'access key'
        return {
          reachable: true,
          authenticated: true,
          identity: who.arn ?? identity ?? `${kind} ${creds.accessKeyId.slice(0, 4)}…`,
          detail: `${at}; Secrets Manager answered${who.arn ? '' : `; STS GetCallerIdentity failed: ${who.error}`}`,
        }
      },
      async close() {
        client.destroy()
      },
    }
  },
}

/**
 * Map what the AWS SDK throws to a `ProviderError`. Only the error's name (the
 * service's `__type`), its HTTP status, a socket code and the `retry-after` header are
 * read; the SDK's message and `$response` are never copied (no `cause` either), so
 * nothing a service or a credential provider echoed can reach a log.
 */

const AUTH = new Set([
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'IncompleteSignatureException',
  'MissingAuthenticationTokenException',
  'ExpiredToken',
  'ExpiredTokenException',
  'InvalidClientTokenId',
  'SignatureDoesNotMatch',
  'AuthFailure',
  'RequestExpired',
  'InvalidAccessKeyId',
  'CredentialsProviderError',
  'TokenProviderError',
])

const THROTTLE = new Set(['ThrottlingException', 'Throttling', 'TooManyRequestsException', 'RequestLimitExceeded', 'ThrottledException', 'SlowDown', 'RequestThrottled', 'RequestThrottledException'])

const UNAVAILABLE = new Set(['InternalServiceError', 'InternalServiceErrorException', 'InternalFailure', 'ServiceUnavailable', 'ServiceUnavailableException'])

const NETWORK = /^(E[A-Z]+|ERR_[A-Z_]+|UND_ERR_[A-Z_]+)$/
const TLS = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ERR_TLS|ERR_SSL|EPROTO/

interface SdkError {
  name?: unknown
  code?: unknown
  message?: unknown
  $fault?: unknown
  $metadata?: { httpStatusCode?: unknown }
  $response?: { headers?: Record<string, string | undefined> }
}

/** The longest `Retry-After` wait taken from Secrets Manager; a longer ask is capped. */
const RETRY_AFTER_CAP_MS = 300_000

function mapAwsError(err: unknown, what: string, where: string): ProviderError {
  if (err instanceof ProviderError) return err
  const e = (err ?? {}) as SdkError
  const name = typeof e.name === 'string' && /^[A-Za-z0-9_.:-]{1,100}$/.test(e.name) ? e.name : 'Error'
  const status = typeof e.$metadata?.httpStatusCode === 'number' ? e.$metadata.httpStatusCode : undefined
  const code = typeof e.code === 'string' && NETWORK.test(e.code) ? e.code : undefined
  const providerCode = status !== undefined ? `${name} (HTTP ${status})` : (code ?? name)
  const make = (c: ProviderErrorCode, message: string, extra: { retryable?: boolean; retryAfterMs?: number | undefined } = {}) =>
    new ProviderError(c, `${where}: ${message} (${providerCode})`, { providerCode, ...extra })

  if (name === 'AbortError') return make('provider_timeout', `${what}: Secrets Manager did not answer in time`)
  if (name === 'TimeoutError' || code === 'ETIMEDOUT') return make('provider_timeout', `${what}: the request to Secrets Manager timed out`)
  if (name === 'ResourceNotFoundException') return make('secret_not_found', `${what} does not exist (or the version / staging label does not)`)
  if (name === 'AccessDeniedException') return make('access_denied', `${what}: IAM does not allow secretsmanager:GetSecretValue on it`)
  if (name === 'DecryptionFailure') return make('access_denied', `${what}: Secrets Manager cannot decrypt it with its KMS key (check kms:Decrypt on the key)`)
  if (name === 'InvalidRequestException') {
    // For GetSecretValue this is almost always a secret scheduled for deletion.
    const deleted = typeof e.message === 'string' && /delet/i.test(e.message)
    return deleted
      ? make('secret_not_found', `${what} is marked for deletion`)
      : make('access_denied', `${what}: Secrets Manager refused the request in the secret's current state`, { retryable: false })
  }
  if (name === 'InvalidParameterException' || name === 'ValidationException' || name === 'ValidationError') {
    return make('provider_config', `${what}: Secrets Manager rejected the SecretId or version`, { retryable: false })
  }
  if (AUTH.has(name) || /credential/i.test(name)) return make('provider_auth_failed', `${what}: AWS did not accept latchkey's credentials (or none could be loaded)`)
  if (name === 'AccessDenied') return make('provider_auth_failed', `${what}: assuming the configured role was refused`)
  if (THROTTLE.has(name) || status === 429) {
    return make('throttled', `${what}: Secrets Manager throttled the request`, { retryAfterMs: parseRetryAfter(e.$response?.headers?.['retry-after'], RETRY_AFTER_CAP_MS) })
  }
  if (UNAVAILABLE.has(name) || e.$fault === 'server' || (status !== undefined && status >= 500)) {
    return make('provider_unavailable', `${what}: Secrets Manager answered with a server error`, { retryAfterMs: parseRetryAfter(e.$response?.headers?.['retry-after'], RETRY_AFTER_CAP_MS) })
  }
  if (status === undefined) {
    if (code !== undefined && TLS.test(code)) return make('provider_unavailable', `${what}: TLS verification of the Secrets Manager endpoint failed`, { retryable: false })
    if (code !== undefined || name === 'Error' || name === 'TypeError') return make('provider_unavailable', `${what}: cannot reach Secrets Manager`)
  }
  return make('provider_config', `${what}: Secrets Manager rejected the request`, { retryable: false })
}
