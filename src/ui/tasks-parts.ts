/** Shared pieces of the task views: per-part progress, file inputs with drop and paste, downloads. */
import type { PartEvent } from '../tasks/fanout.ts'
import { short } from './render.ts'

/** One progress bar per stage, with a cell per part coloured by its state (title: the worker). */
export function partsProgress(el: HTMLElement): { onPart: (e: PartEvent) => void; reset(): void } {
  const stages = new Map<string, { bar: HTMLProgressElement; label: HTMLElement; cells: HTMLElement[] }>()
  const stage = (e: PartEvent) => {
    let s = stages.get(e.stage)
    if (s && s.cells.length === e.total) return s
    const row = document.createElement('div')
    row.className = 'task-stage'
    const label = document.createElement('span')
    const bar = Object.assign(document.createElement('progress'), { max: e.total, value: 0 })
    const strip = document.createElement('span')
    strip.className = 'task-cells'
    const cells = Array.from({ length: e.total }, () => strip.appendChild(document.createElement('i')))
    row.append(label, bar, strip)
    if (s) s.bar.parentElement!.replaceWith(row)
    else el.append(row)
    s = { bar, label, cells }
    stages.set(e.stage, s)
    return s
  }
  return {
    onPart(e) {
      const s = stage(e)
      const cell = s.cells[e.index]
      if (cell) {
        cell.className = e.state
        cell.title = `part ${e.index + 1}: ${e.state}${e.worker ? ` on ${short(e.worker)}` : ''}${e.ms ? `, ${e.ms.toFixed(0)} ms` : ''}${e.error ? `: ${e.error}` : ''}`
      }
      const done = s.cells.filter((c) => c.className === 'done').length
      s.bar.value = done
      s.label.textContent = `${e.stage}: ${done}/${e.total} parts`
    },
    reset() {
      stages.clear()
      el.replaceChildren()
    },
  }
}

/** Calls `onFiles` with chosen, dropped or pasted files whose type starts with `accept` (e.g. 'image/'). */
export function fileSource(
  input: HTMLInputElement,
  drop: HTMLElement,
  accept: string,
  onFiles: (f: File[]) => void,
) {
  const pick = (files?: FileList | null) => {
    const ok = [...(files ?? [])].filter((f) => f.type === '' || f.type.startsWith(accept))
    if (ok.length) onFiles(ok)
  }
  input.addEventListener('change', () => pick(input.files))
  drop.addEventListener('dragover', (e) => {
    e.preventDefault()
    drop.classList.add('over')
  })
  drop.addEventListener('dragleave', () => drop.classList.remove('over'))
  drop.addEventListener('drop', (e) => {
    e.preventDefault()
    drop.classList.remove('over')
    pick(e.dataTransfer?.files)
  })
  // Paste goes to the view that is showing.
  document.addEventListener('paste', (e) => {
    if (!drop.closest('[hidden]')) pick(e.clipboardData?.files)
  })
}

export function download(name: string, data: BlobPart, type = 'application/octet-stream'): void {
  const url = URL.createObjectURL(new Blob([data], { type }))
  const a = Object.assign(document.createElement('a'), { href: url, download: name })
  a.click()
  setTimeout(() => URL.revokeObjectURL(url), 10_000)
}

/** A button that copies `text()` to the clipboard and says whether it did. */
export function copyButton(label: string, text: () => string): HTMLButtonElement {
  const b = Object.assign(document.createElement('button'), { type: 'button', textContent: label })
  let timer: ReturnType<typeof setTimeout> | undefined
  // Back to the label, not to whatever the button said: a second click within the flash keeps it right.
  const flash = (said: string) => {
    b.textContent = said
    clearTimeout(timer)
    timer = setTimeout(() => {
      b.textContent = label
    }, 1500)
  }
  b.addEventListener('click', () =>
    navigator.clipboard.writeText(text()).then(
      () => flash('Copied'),
      () => flash('Copy failed: select the text instead'),
    ),
  )
  return b
}

export const errorText = (err: unknown) => `${(err as Error).name}: ${(err as Error).message}`
