import { useCallback, useEffect, useRef, useState } from "react";
import { getStore, run, say, send, useStore } from "./conn";
import { FlowList } from "./FlowList";
import { FlowDetailPane } from "./FlowDetail";
import { FilterBox } from "./FilterBox";
import { CommandBar } from "./CommandBar";
import { RetriesPage } from "./pages/Retries";
import { FaultsPage } from "./pages/Faults";
import { ShapingPage } from "./pages/Shaping";
import { OptionsPage } from "./pages/Options";
import { EventsPage } from "./pages/Events";
import { FlowMenu } from "./FlowMenu";

export type Page = "flows" | "retries" | "faults" | "shaping" | "options" | "events";
const PAGES: [Page, string][] = [
  ["flows", "Flows"],
  ["retries", "Retries"],
  ["faults", "Faults"],
  ["shaping", "Shaping"],
  ["options", "Options"],
  ["events", "Events"],
];

type Theme = "system" | "light" | "dark";

export function App() {
  const [page, setPage] = useState<Page>("flows");
  const [detailOpen, setDetailOpen] = useState(false);
  const [theme, setTheme] = useState<Theme>(() => (localStorage.getItem("sluice-theme") as Theme | null) ?? "system");
  const state = useStore((s) => s.state);
  const connected = useStore((s) => s.connected);
  const closedReason = useStore((s) => s.closedReason);
  const message = useStore((s) => s.message);
  // Narrow selections: a new page of rows (ten times a second) must not redraw the whole app.
  const filterError = useStore((s) => s.rows?.filterError ?? null);
  const highlightError = useStore((s) => s.rows?.highlightError ?? null);
  const progress = useStore((s) => s.rows?.progress ?? null);
  const [highlight, setHighlight] = useState("");
  const openDetail = useCallback(() => setDetailOpen(true), []);
  const filterRef = useRef<HTMLInputElement>(null);
  const interceptRef = useRef<HTMLInputElement>(null);
  const highlightRef = useRef<HTMLInputElement>(null);
  const commandRef = useRef<HTMLInputElement>(null);

  useEffect(() => {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem("sluice-theme", theme);
  }, [theme]);

  useEffect(() => {
    const pages = page === "flows" ? [] : [page];
    send({ type: "pages", pages }, "pages");
  }, [page]);

  // The detail pane follows the focused flow (the view's focus: what @focus means in commands).
  const focusId = state?.focusId ?? null;
  useEffect(() => {
    send({ type: "detail", id: detailOpen ? focusId : null }, "detail");
  }, [detailOpen, focusId]);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const target = e.target as HTMLElement;
      const typing = target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT" || target.isContentEditable;
      if (typing) {
        if (e.key === "Escape") target.blur();
        return;
      }
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === ":") {
        e.preventDefault();
        return commandRef.current?.focus();
      }
      if (page !== "flows") return;
      const flowKeys = flowKey(e, { detailOpen, setDetailOpen, filterRef, interceptRef, highlightRef });
      if (flowKeys) e.preventDefault();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [page, detailOpen]);

  return (
    <div className="app">
      <header className="top">
        <span className="brand">sluice</span>
        <nav className="pages">
          {PAGES.map(([p, label]) => (
            <button key={p} className={p === page ? "active" : ""} onClick={() => setPage(p)} data-page={p}>
              {label}
            </button>
          ))}
        </nav>
        <span className="spacer" />
        <span className="proxy" title="the proxy's address">
          {state ? `${state.mode} proxy at ${state.proxy}` : ""}
        </span>
        <select aria-label="theme" value={theme} onChange={(e) => setTheme(e.target.value as Theme)}>
          <option value="system">system theme</option>
          <option value="light">light</option>
          <option value="dark">dark</option>
        </select>
      </header>
      {!connected && <div className="banner error">{closedReason ?? "connecting to sluice…"}</div>}
      {page === "flows" && (
        <>
          <div className="filters">
            <FilterBox
              label="Filter"
              name="filter"
              inputRef={filterRef}
              value={state?.viewFilter ?? ""}
              error={filterError}
              onApply={(expr) => send({ type: "view", filter: expr })}
              progress={progress}
            />
            <FilterBox
              label="Highlight"
              name="highlight"
              inputRef={highlightRef}
              value={highlight}
              error={highlightError}
              onApply={(expr) => {
                setHighlight(expr);
                send({ type: "view", highlight: expr }, "view");
              }}
              progress={null}
            />
            <FilterBox
              label="Intercept"
              name="intercept"
              inputRef={interceptRef}
              value={state?.intercept ?? ""}
              error={state?.interceptError ?? null}
              onApply={(expr) => send({ type: "intercept", expr })}
              progress={null}
            />
            <FlowMenu />
          </div>
          <main className={detailOpen ? "flows split" : "flows"}>
            <FlowList onOpen={openDetail} />
            {detailOpen && <FlowDetailPane onClose={() => setDetailOpen(false)} />}
          </main>
        </>
      )}
      {page === "retries" && <RetriesPage onOpenFlow={(id) => openFlow(id, setPage, setDetailOpen)} />}
      {page === "faults" && <FaultsPage />}
      {page === "shaping" && <ShapingPage />}
      {page === "options" && <OptionsPage />}
      {page === "events" && <EventsPage />}
      <footer className="bottom">
        <CommandBar inputRef={commandRef} />
        <Status />
        {message && (
          <span className={message.error ? "message error" : "message"} role="status">
            {message.text.split("\n")[0]}
          </span>
        )}
      </footer>
    </div>
  );
}

function Status() {
  const total = useStore((s) => s.rows?.total ?? null);
  const all = useStore((s) => s.rows?.all ?? 0);
  const paused = useStore((s) => s.state?.paused ?? 0);
  return (
    <span className="status">
      {total !== null ? `${total.toLocaleString()} shown of ${all.toLocaleString()} flows` : ""}
      {paused > 0 ? ` · ${paused} intercepted (a resumes, A all)` : ""}
    </span>
  );
}

function openFlow(id: string, setPage: (p: Page) => void, setDetailOpen: (b: boolean) => void): void {
  send({ type: "focus", id });
  setPage("flows");
  setDetailOpen(true);
}

interface KeyContext {
  detailOpen: boolean;
  setDetailOpen: (b: boolean) => void;
  filterRef: React.RefObject<HTMLInputElement | null>;
  interceptRef: React.RefObject<HTMLInputElement | null>;
  highlightRef: React.RefObject<HTMLInputElement | null>;
}

/** mitmweb's keys on the flow list. Returns whether the key was used. */
function flowKey(e: KeyboardEvent, k: KeyContext): boolean {
  const s = getStore();
  const rows = s.rows;
  const focusId = s.state?.focusId ?? null;
  const index = rows?.focusIndex ?? -1;
  const move = (to: number) => {
    if (!rows || rows.total === 0) return;
    const i = Math.max(0, Math.min(rows.total - 1, to));
    const local = rows.rows[i - rows.offset];
    send(local ? { type: "focus", id: local.id } : { type: "focus", index: i });
  };
  const on = (command: string) => {
    if (!focusId) return say("no flow selected", true);
    // @focus is resolved by sluice, after any focus change this page sent before (one ordered
    // socket): a key pressed right after a click acts on the clicked flow, not the one before.
    void run(command);
  };
  switch (e.key) {
    case "j":
    case "ArrowDown":
      move(index + 1);
      return true;
    case "k":
    case "ArrowUp":
      move(index - 1);
      return true;
    case "PageDown":
      move(index + 20);
      return true;
    case "PageUp":
      move(index - 20);
      return true;
    case "Home":
    case "g":
      move(0);
      return true;
    case "End":
    case "G":
      move(Number.MAX_SAFE_INTEGER);
      return true;
    case "Enter":
      if (focusId) k.setDetailOpen(true);
      return true;
    case "Escape":
      k.setDetailOpen(false);
      return true;
    case "/":
    case "f":
      k.filterRef.current?.focus();
      k.filterRef.current?.select();
      return true;
    case "i":
      k.interceptRef.current?.focus();
      k.interceptRef.current?.select();
      return true;
    case "h":
      k.highlightRef.current?.focus();
      k.highlightRef.current?.select();
      return true;
    case "Delete":
    case "d":
      on("flow.delete @focus");
      return true;
    case "D":
      on("flow.duplicate @focus");
      return true;
    case "r":
      on("replay.client @focus");
      return true;
    case "a":
      on("flow.resume @focus");
      return true;
    case "A":
      void run("flow.resume @all");
      return true;
    case "x":
      on("flow.kill @focus");
      return true;
    case "m":
      on("flow.mark.toggle @focus");
      return true;
    case "z":
      void run("view.clear");
      return true;
    case "Tab":
      if (!k.detailOpen) return false;
      window.dispatchEvent(new CustomEvent("sluice-tab", { detail: e.shiftKey ? -1 : 1 }));
      return true;
  }
  return false;
}
