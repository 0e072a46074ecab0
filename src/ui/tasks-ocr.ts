/**
 * OCR view: image in (file, drop, paste), numbered boxes drawn over it, the text as plain copyable text
 * with each line's confidence beside it (never inside it), per-part progress.
 */
import { decodeImage } from '../tasks/ocr/decode.ts'
import type { RgbaImage } from '../tasks/ocr/image.ts'
import type { OcrResult } from '../tasks/ocr/pipeline.ts'
import type { Tasks } from '../tasks/peer-tasks.ts'
import { copyButton, download, errorText, fileSource, partsProgress } from './tasks-parts.ts'

export function drawOcr(canvas: HTMLCanvasElement, img: RgbaImage, result?: OcrResult): void {
  canvas.width = img.width
  canvas.height = img.height
  const g = canvas.getContext('2d')!
  g.putImageData(new ImageData(new Uint8ClampedArray(img.data), img.width, img.height), 0, 0)
  if (!result) return
  g.lineWidth = Math.max(2, img.width / 400)
  g.strokeStyle = '#e03'
  g.fillStyle = '#e03'
  g.font = `${Math.max(12, img.width / 60)}px sans-serif`
  result.lines.forEach((l, i) => {
    g.strokeRect(l.box.x, l.box.y, l.box.w, l.box.h)
    g.fillText(String(i + 1), l.box.x, Math.max(12, l.box.y - 3))
  })
}

/** The recognized lines as a table (number, text, confidence) plus the plain text to copy or download. */
function showLines(el: HTMLElement, name: string, r: OcrResult): void {
  if (!r.lines.length) {
    el.textContent = 'No text found.'
    return
  }
  const plain = r.lines.map((l) => l.text).join('\n')
  const table = document.createElement('table')
  table.className = 'ocr-lines'
  table.createCaption().textContent = `Text in ${name}`
  const head = table.createTHead().insertRow()
  for (const h of ['#', 'Text', 'Confidence']) {
    const th = document.createElement('th')
    th.scope = 'col'
    th.textContent = h
    head.append(th)
  }
  const body = table.createTBody()
  r.lines.forEach((l, k) => {
    const tr = body.insertRow()
    tr.insertCell().textContent = String(k + 1)
    tr.insertCell().textContent = l.text
    const conf = tr.insertCell()
    conf.textContent = `${(l.score * 100).toFixed(0)}%`
    if (l.score < 0.5) conf.textContent += ' (low)'
  })
  const save = Object.assign(document.createElement('button'), {
    type: 'button',
    textContent: 'Download text',
  })
  save.addEventListener('click', () => download(`${name.replace(/\.[^.]+$/, '')}.txt`, plain, 'text/plain'))
  const actions = document.createElement('p')
  actions.append(
    copyButton('Copy text', () => plain),
    ' ',
    save,
  )
  el.replaceChildren(table, actions)
}

export function mountOcrView(tasks: Tasks, el: HTMLElement): void {
  el.innerHTML = `<p class="drop" data-role="drop">Drop or paste images here, or
      <label>choose image files <input type="file" accept="image/*" multiple data-role="file" /></label></p>
    <p><label>Text boxes per job <input type="number" min="1" max="16" value="4" data-role="batch" /></label></p>
    <div data-role="progress"></div>
    <output data-role="status"></output>
    <div data-role="pages"></div>`
  const $ = <T extends HTMLElement>(role: string) => el.querySelector<T>(`[data-role="${role}"]`)!
  const file = $<HTMLInputElement>('file')
  const status = $<HTMLOutputElement>('status')
  const pages = $('pages')
  const progress = partsProgress($('progress'))

  const run = async (files: File[]) => {
    progress.reset()
    pages.replaceChildren()
    status.className = ''
    status.textContent = `decoding ${files.length} image(s)…`
    try {
      const images = await Promise.all(files.map((f) => decodeImage(f)))
      const views = images.map((img, i) => {
        const fig = document.createElement('figure')
        const canvas = document.createElement('canvas')
        canvas.setAttribute('role', 'img')
        canvas.setAttribute('aria-label', `${files[i]!.name}, text boxes numbered as the lines below`)
        const cap = document.createElement('figcaption')
        cap.textContent = files[i]!.name
        const text = document.createElement('div')
        fig.append(canvas, cap)
        pages.append(fig, text)
        drawOcr(canvas, img)
        return { canvas, text }
      })
      status.textContent = 'detecting text…'
      const recBatch = Math.max(1, Math.min(16, Number($<HTMLInputElement>('batch').value) || 4))
      const results = await tasks.ocrPages(images, { recBatch, onPart: progress.onPart })
      results.forEach((r, i) => {
        drawOcr(views[i]!.canvas, images[i]!, r)
        showLines(views[i]!.text, files[i]!.name, r)
      })
      const t = results[0]!.timings
      const lines = results.reduce((n, r) => n + r.lines.length, 0)
      status.className = 'ok'
      status.textContent = `${lines} line(s) in ${t.totalMs.toFixed(0)} ms (detection ${t.detMs.toFixed(0)} ms, recognition ${t.recMs.toFixed(0)} ms)`
    } catch (err) {
      status.className = 'bad'
      status.textContent = errorText(err)
    }
  }
  fileSource(file, $('drop'), 'image/', (files) => void run(files))
}
