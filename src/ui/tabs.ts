/**
 * WAI-ARIA tabs over a `role="tablist"` element whose `role="tab"` children carry `data-view` and
 * `aria-controls`: one panel shown, roving tabindex, arrow keys, Home and End (automatic activation).
 */
export interface Tabs {
  readonly current: string
  readonly names: readonly string[]
  /** Shows `name`'s panel (unknown names are ignored); moves focus to its tab when asked. */
  show(name: string, focus?: boolean): void
}

/** Shows `initial` (when it names a tab) or the first tab. */
export function mountTabs(list: HTMLElement, onShow?: (name: string) => void, initial?: string): Tabs {
  const tabs = [...list.querySelectorAll<HTMLElement>('[role="tab"]')]
  const names = tabs.map((t) => t.dataset.view!)
  const panel = (t: HTMLElement) => document.getElementById(t.getAttribute('aria-controls')!)
  let current = ''
  const show = (name: string, focus = false) => {
    const at = names.indexOf(name)
    if (at < 0) return
    tabs.forEach((t, i) => {
      const on = i === at
      t.setAttribute('aria-selected', String(on))
      t.tabIndex = on ? 0 : -1
      const p = panel(t)
      if (p) p.hidden = !on
    })
    if (focus) tabs[at]!.focus()
    if (current !== name) {
      current = name
      onShow?.(name)
    }
  }
  const KEYS: Record<string, (i: number) => number> = {
    ArrowRight: (i) => (i + 1) % tabs.length,
    ArrowDown: (i) => (i + 1) % tabs.length,
    ArrowLeft: (i) => (i - 1 + tabs.length) % tabs.length,
    ArrowUp: (i) => (i - 1 + tabs.length) % tabs.length,
    Home: () => 0,
    End: () => tabs.length - 1,
  }
  list.addEventListener('keydown', (e) => {
    const step = KEYS[e.key]
    const at = tabs.indexOf(e.target as HTMLElement)
    if (!step || at < 0) return
    e.preventDefault()
    show(names[step(at)]!, true)
  })
  for (const t of tabs) t.addEventListener('click', () => show(t.dataset.view!))
  show(initial && names.includes(initial) ? initial : names[0]!)
  return {
    get current() {
      return current
    },
    names,
    show,
  }
}
