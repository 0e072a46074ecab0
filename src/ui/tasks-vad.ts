/** Voice activity view: audio file in, speech segments on a timeline over the per-frame probability. */
import type { Tasks } from '../tasks/peer-tasks.ts'
import type { VadResult } from '../tasks/vad/pipeline.ts'
import { copyButton, download, errorText, fileSource, partsProgress } from './tasks-parts.ts'

export function drawTimeline(canvas: HTMLCanvasElement, r: VadResult): void {
  const [w, h] = [960, 120]
  canvas.width = w
  canvas.height = h
  const g = canvas.getContext('2d')!
  const x = (sec: number) => (sec / Math.max(r.seconds, 1e-3)) * w
  g.clearRect(0, 0, w, h)
  g.fillStyle = '#2a27'
  for (const s of r.segments) g.fillRect(x(s.start), 0, Math.max(1, x(s.end) - x(s.start)), h - 16)
  g.strokeStyle = '#36c'
  g.beginPath()
  r.probs.forEach((p, i) => {
    g.lineTo(x(i * r.frameSeconds), (1 - p) * (h - 16))
  })
  g.stroke()
  g.fillStyle = '#888'
  g.font = '11px sans-serif'
  const step = r.seconds > 120 ? 30 : r.seconds > 30 ? 10 : r.seconds > 10 ? 2 : 1
  for (let t = 0; t <= r.seconds; t += step) g.fillText(`${t}s`, x(t) + 2, h - 3)
}

export function mountVadView(tasks: Tasks, el: HTMLElement): void {
  el.innerHTML = `<p class="drop" data-role="drop">Drop or paste an audio file here, or
      <label>choose an audio file <input type="file" accept="audio/*" data-role="file" /></label></p>
    <p><label>Seconds per job <input type="number" min="1" max="60" value="30" data-role="chunk" /></label>
      <label><input type="checkbox" data-role="sequential" /> Carry state across jobs (exact, one at a time)</label></p>
    <div data-role="progress"></div>
    <output data-role="status"></output>
    <canvas class="task-timeline" data-role="timeline" role="img" hidden></canvas>
    <p data-role="actions" hidden></p>
    <pre data-role="segments"></pre>`
  const $ = <T extends HTMLElement>(role: string) => el.querySelector<T>(`[data-role="${role}"]`)!
  const status = $<HTMLOutputElement>('status')
  const timeline = $<HTMLCanvasElement>('timeline')
  const list = $('segments')
  const actions = $('actions')
  const progress = partsProgress($('progress'))

  const run = async (file: File) => {
    progress.reset()
    list.textContent = ''
    timeline.hidden = true
    actions.hidden = true
    status.className = ''
    status.textContent = `decoding ${file.name}…`
    try {
      const chunkSeconds = Math.max(1, Math.min(60, Number($<HTMLInputElement>('chunk').value) || 30))
      const sequential = $<HTMLInputElement>('sequential').checked
      const r = await tasks.vad(await file.arrayBuffer(), {
        chunkSeconds,
        sequential,
        onPart: progress.onPart,
      })
      timeline.hidden = false
      drawTimeline(timeline, r)
      const text = r.segments.length
        ? r.segments.map((s, i) => `${i + 1}. ${s.start.toFixed(2)} s – ${s.end.toFixed(2)} s`).join('\n')
        : 'no speech found'
      list.textContent = text
      timeline.setAttribute(
        'aria-label',
        `${r.segments.length} speech segment(s) over ${r.seconds.toFixed(1)} s of audio, listed below`,
      )
      const json = JSON.stringify({ file: file.name, seconds: r.seconds, segments: r.segments }, null, 2)
      const save = Object.assign(document.createElement('button'), {
        type: 'button',
        textContent: 'Download segments (JSON)',
      })
      save.addEventListener('click', () =>
        download(`${file.name.replace(/\.[^.]+$/, '')}-speech.json`, json, 'application/json'),
      )
      actions.replaceChildren(
        save,
        ' ',
        copyButton('Copy segments', () => text),
      )
      actions.hidden = false
      status.className = 'ok'
      status.textContent = `${r.segments.length} speech segment(s) in ${r.seconds.toFixed(1)} s of audio; ${r.chunks} job(s), ${r.ms.toFixed(0)} ms`
    } catch (err) {
      status.className = 'bad'
      status.textContent = errorText(err)
    }
  }
  fileSource($<HTMLInputElement>('file'), $('drop'), 'audio/', (files) => void run(files[0]!))
}
