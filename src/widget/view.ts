/** The widget's shadow DOM: a consent card, a status line, counters and buttons. Text only, never HTML from peers. */

export type Mode = 'contribute' | 'submit' | 'status'

export interface ViewState {
  mode: Mode
  consented: boolean
  started: boolean
  status: string
  isolated: boolean
  paused: boolean
  running: number
  served: number
  credit: number
  peers: number
}

const CSS = `:host{display:block;font:14px/1.4 system-ui,sans-serif;--bg:#fff;--fg:#222;--muted:#666;--accent:#2463eb;--border:#ccd}
:host([theme=dark]){--bg:#1c1e22;--fg:#eee;--muted:#aaa;--accent:#6ea0ff;--border:#445}
@media (prefers-color-scheme:dark){:host(:not([theme])),:host([theme=auto]){--bg:#1c1e22;--fg:#eee;--muted:#aaa;--accent:#6ea0ff;--border:#445}}
.box{background:var(--bg);color:var(--fg);border:1px solid var(--border);border-radius:8px;padding:10px 12px;max-width:28rem}
h2{font-size:15px;margin:0 0 6px}p{margin:4px 0}.muted{color:var(--muted);font-size:12px}
button{font:inherit;border:1px solid var(--accent);background:transparent;color:var(--accent);border-radius:6px;padding:3px 10px;cursor:pointer;margin:4px 6px 0 0}
button.primary{background:var(--accent);color:var(--bg)}[hidden]{display:none!important}
dl{display:grid;grid-template-columns:max-content 1fr;gap:0 10px;margin:6px 0}dt{color:var(--muted)}dd{margin:0}`

const HTML = `<div class="box" part="box">
  <h2>peer-compute</h2>
  <div id="consent" hidden>
    <p>Lend this browser's spare compute to the peer-compute swarm while you are on this site?
    Jobs run in a background worker and earn you signed credit. Nothing runs until you agree;
    you can pause or withdraw at any time.</p>
    <button type="button" class="primary" data-action="consent">Contribute compute</button>
  </div>
  <p id="status" aria-live="polite"></p>
  <p id="single" class="muted" hidden>Single-threaded WASM: this page is not cross-origin isolated.</p>
  <dl id="stats" hidden><dt>Running</dt><dd id="running"></dd><dt>Jobs served</dt><dd id="served"></dd>
    <dt>Credit</dt><dd id="credit"></dd><dt>Peers</dt><dd id="peers"></dd></dl>
  <div id="actions" hidden>
    <button type="button" data-action="toggle">Pause</button>
    <button type="button" data-action="export">Export credit log</button>
    <button type="button" data-action="revoke">Withdraw consent</button>
  </div>
</div>`

export function createView(root: ShadowRoot, onAction: (action: string) => void) {
  root.innerHTML = `<style>${CSS}</style>${HTML}`
  const $ = (id: string) => root.getElementById(id)!
  root.addEventListener('click', (e) => {
    const action = (e.target as HTMLElement).closest('button')?.dataset.action
    if (action) onAction(action)
  })
  return (s: ViewState) => {
    const contribute = s.mode === 'contribute'
    $('consent').hidden = !contribute || s.consented
    $('status').textContent = s.status
    $('single').hidden = !s.started || s.isolated || !contribute
    $('stats').hidden = !s.started
    $('running').textContent = String(s.running)
    $('served').textContent = String(s.served)
    $('credit').textContent = String(s.credit)
    $('peers').textContent = String(s.peers)
    $('actions').hidden = !contribute || !s.consented
    root.querySelector('[data-action=toggle]')!.textContent = s.paused ? 'Resume' : 'Pause'
  }
}
