import { z } from 'zod'
import { duration } from '../values/schema.ts'

const mintBase = {
  /** Replace a client-sent `Authorization` header (default). `false` keeps the client's. */
  overwrite: z.boolean().default(true),
  /** A token is replaced this long before its `expires_in` ends (at most half its lifetime). Default 60s. */
  expirySkew: duration.default(60_000),
}

const oneOrMany = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).transform((v) => [v].flat())

/**
 * Credentials whose header value is a token minted from the stored secret (or the pod's own
 * identity) and sent as `Authorization: Bearer <token>`. The cache holds the token for its
 * `expires_in` minus `expirySkew`; the stored secret (client secret, private key, service
 * account key) is cached on its own under the credential's TTL.
 */
export const mintInjectSchemas = [
  /** OAuth 2.0 client credentials grant (RFC 6749 §4.4). The credential's secret is the client secret, or the private key for `private_key_jwt`. */
  z
    .object({
      type: z.literal('oauth2'),
      /** Token endpoint: `https://` (or `http://` on a loopback address with `insecure: true`). */
      tokenUrl: z.string().min(1),
      clientId: z.string().min(1),
      /** Client authentication at the token endpoint. Default `client_secret_basic`. */
      auth: z.enum(['client_secret_basic', 'client_secret_post', 'private_key_jwt']).default('client_secret_basic'),
      /** `kid` header of the `private_key_jwt` assertion. */
      keyId: z.string().min(1).optional(),
      /** Audience (`aud`) of the `private_key_jwt` assertion; default the token endpoint URL. */
      assertionAudience: z.string().min(1).optional(),
      scope: oneOrMany.optional(),
      audience: z.string().min(1).optional(),
      /** RFC 8707 resource indicator(s). */
      resource: oneOrMany.optional(),
      /** More form parameters for the token request. */
      params: z.record(z.string().min(1), z.string()).optional(),
      /** Allow an `http://` token endpoint on a loopback address (tests, local dev). */
      insecure: z.boolean().default(false),
      ...mintBase,
    })
    .strict(),
  /** A Google access token: from a service-account key JSON held in a provider, else Application Default Credentials. */
  z
    .object({
      type: z.literal('gcp-access-token'),
      scopes: z.array(z.string().min(1)).min(1).default(['https://www.googleapis.com/auth/cloud-platform']),
      ...mintBase,
    })
    .strict(),
  /** A Microsoft Entra access token: from a client secret held in a provider (`tenantId`, `clientId` required), else `DefaultAzureCredential`. */
  z
    .object({
      type: z.literal('azure-access-token'),
      scopes: z.array(z.string().min(1)).min(1),
      tenantId: z.string().min(1).optional(),
      clientId: z.string().min(1).optional(),
      /** Entra authority host; default `https://login.microsoftonline.com`. */
      authorityHost: z.string().min(1).optional(),
      ...mintBase,
    })
    .strict(),
  /**
   * AWS Signature Version 4 over each request (AWS APIs, S3 and S3-compatible stores). The
   * secret is JSON with `accessKeyId`, `secretAccessKey` and an optional `sessionToken`; without
   * `provider` and `ref`, the sidecar's own AWS identity (IRSA, EKS Pod Identity, environment).
   */
  z
    .object({
      type: z.literal('aws-sigv4'),
      /** Re-sign a request that carries its own `Authorization` (default). `false` sends such a request as the client signed it. */
      overwrite: z.boolean().default(true),
      /** Signing region; default: derived from the host (`s3.eu-west-1.amazonaws.com`), else from `endpoints`. */
      region: z.string().regex(/^[a-z0-9-]+$/, 'expected an AWS region name such as eu-west-1').optional(),
      /** Signing service (`s3`, `execute-api`, ...); default: derived from the host, else from `endpoints`. */
      service: z.string().regex(/^[a-z0-9-]+$/, 'expected an AWS service signing name such as s3').optional(),
      /** Hosts that are not `*.amazonaws.com` (MinIO, R2, a VPC endpoint): `host[:port]` (port unless 443/80) → region and service. */
      endpoints: z.record(z.string().min(1), z.object({ region: z.string().regex(/^[a-z0-9-]+$/), service: z.string().regex(/^[a-z0-9-]+$/) }).strict()).optional(),
      /** Largest body read into memory to hash it, for services that need a signed payload (not S3, whose bodies stream). */
      maxBodyBytes: z.number().int().positive().default(1_048_576),
      /** Keys from the sidecar's identity are replaced this long before they expire. Default 5m. */
      expirySkew: duration.default(300_000),
    })
    .strict(),
] as const

export type MintInjectConfig = z.infer<(typeof mintInjectSchemas)[number]>
export const MINT_TYPES: ReadonlySet<string> = new Set(['oauth2', 'gcp-access-token', 'azure-access-token', 'aws-sigv4'])
