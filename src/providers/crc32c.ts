/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as Google Cloud uses for
 * `SecretPayload.dataCrc32c`. Table-driven, one table built at module load; no
 * dependency because no CRC-32C package ships with the installed SDKs.
 */

const TABLE = (() => {
  const t = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    t[n] = c >>> 0
  }
  return t
})()

/** The CRC-32C of `data` as an unsigned 32-bit integer (`"123456789"` → 3808858755). */
export function crc32c(data: Uint8Array): number {
  let crc = 0xffffffff
  for (let i = 0; i < data.length; i++) crc = (TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8)) >>> 0
  return (crc ^ 0xffffffff) >>> 0
}
