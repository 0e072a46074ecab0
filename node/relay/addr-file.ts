import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'

const idOf = (addr: string) => addr.split('/p2p/').pop()

/**
 * Writes `{ relays }` to `file`, keeping what else an existing file holds: other keys (say,
 * `iceServers`) and other relays' addresses. Only this relay's own earlier entries (same PeerId) are
 * replaced, so several relays on one host can share one peer-compute.json. Written to a temporary
 * file and renamed, so a reader never sees half of it.
 */
export async function writeAddrFile(file: string, addrs: string[]): Promise<void> {
  let prev: Record<string, unknown> = {}
  try {
    const parsed: unknown = JSON.parse(await readFile(file, 'utf8'))
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed))
      prev = parsed as Record<string, unknown>
  } catch {
    // none yet, or not ours to keep
  }
  const ours = new Set(addrs.map(idOf))
  const kept = Array.isArray(prev.relays)
    ? prev.relays.filter((r): r is string => typeof r === 'string' && !ours.has(idOf(r)))
    : []
  await mkdir(dirname(file), { recursive: true })
  // A temporary name of our own: relays sharing one file must not write each other's half.
  const tmp = `${file}.${process.pid}.tmp`
  await writeFile(tmp, `${JSON.stringify({ ...prev, relays: [...addrs, ...kept] }, null, 2)}\n`)
  await rename(tmp, file)
}
