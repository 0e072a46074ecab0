/** A batch's progress: a bar redrawn in place on a terminal, a line every 10 % otherwise. */
export interface Progress {
  tick(ok: boolean): void
  end(): void
}

export function createProgress(
  total: number,
  say: (line: string) => void,
  tty = process.stdout.isTTY === true,
): Progress {
  const t0 = performance.now()
  let [done, failed, lastTenth] = [0, 0, 0]
  const line = () => {
    const s = (performance.now() - t0) / 1000
    const rate = done / Math.max(s, 1e-3)
    const eta = rate > 0 ? Math.round((total - done) / rate) : undefined
    const width = 24
    const filled = Math.round((done / total) * width)
    return `[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${done}/${total}${failed ? ` (${failed} failed)` : ''} ${rate.toFixed(1)} jobs/s${eta === undefined ? '' : ` ETA ${eta}s`}`
  }
  return {
    tick(ok) {
      done++
      if (!ok) failed++
      if (tty) process.stdout.write(`\r${line()}`)
      else if (Math.floor((done * 10) / total) > lastTenth || done === total) {
        lastTenth = Math.floor((done * 10) / total)
        say(line())
      }
    },
    end() {
      if (tty) process.stdout.write('\n')
    },
  }
}
