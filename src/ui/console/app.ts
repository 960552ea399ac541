/**
 * The React root rendered by ink. It owns no behaviour (see controller.ts): it turns the
 * controller's lines into ink elements, forwards keys, and redraws at most `fps` times a second,
 * and only when something changed (or once a second, for the clock and live durations).
 */
import { createElement as h, useEffect, useReducer } from "react";
import { Box, Text, useInput, useStdout } from "ink";
import type { ConsoleController } from "./controller.js";
import type { Line } from "./lines.js";

export interface AppProps {
  controller: ConsoleController;
  colour: boolean;
  fps: number;
}

export function App({ controller, colour, fps }: AppProps) {
  const { stdout } = useStdout();
  const [, redraw] = useReducer((n: number) => n + 1, 0);

  useEffect(() => {
    let last = Date.now();
    const timer = setInterval(() => {
      const now = Date.now();
      if (controller.model.dirty || now - last >= 1000) {
        controller.model.dirty = false;
        last = now;
        redraw();
      }
    }, Math.round(1000 / fps));
    const onResize = () => redraw();
    stdout.on("resize", onResize);
    return () => {
      clearInterval(timer);
      stdout.off("resize", onResize);
    };
  }, [controller, stdout, fps]);

  useInput((input, key) => {
    controller.handleInput(input, key);
    // Keys answer at once; only traffic-driven redraws wait for the frame timer.
    controller.model.dirty = false;
    redraw();
  });

  // The size is read at every render, so ink's own redraw on resize already uses the new one.
  const size = { columns: stdout.columns || 80, rows: stdout.rows || 24 };
  // One line short of the terminal: ink clears the whole screen on every frame that fills it.
  const height = Math.max(5, size.rows - 1);
  const lines = controller.draw(size.columns, height);
  return h(
    Box,
    { flexDirection: "column", width: size.columns, height },
    ...lines.map((line, i) => h(Text, { key: i, wrap: "truncate-end" }, ...renderLine(line, colour))),
  );
}

function renderLine(line: Line, colour: boolean) {
  // An empty Text would take no row at all: blank lines need a character.
  if (line.every((s) => s.text === "")) return [" "];
  return line.map((s, j) =>
    h(Text, { key: j, color: colour ? s.colour : undefined, bold: s.bold, inverse: s.inverse, dimColor: s.dim && colour }, s.text),
  );
}
