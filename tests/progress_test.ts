/** The progress facility: periodic plain lines off a terminal, a redrawn bar on one. */
import assert from "node:assert/strict";
import { consoleProgress, formatDuration } from "../core/progress.ts";

function fakeClock() {
  let t = 0;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

Deno.test("off a terminal: one plain line per interval, with eta and info, and a final line", () => {
  const lines: string[] = [];
  const clock = fakeClock();
  const progress = consoleProgress({
    tty: false,
    lineIntervalMs: 1000,
    now: clock.now,
    write: (t) => lines.push(t),
  })("distill", 100);
  progress.update(0);
  for (let i = 1; i <= 100; i++) {
    clock.advance(50);
    progress.update(i, { loss: 0.125 });
  }
  progress.finish();
  // t=0 first line, then every 1000 ms over 5 s → 5 more, then the final line.
  assert.equal(lines.length, 7);
  assert.equal(lines[0], "[progress] distill 0/100 (0%) 0.0s\n");
  assert.equal(lines[1], "[progress] distill 20/100 (20%) 1.0s eta 4.0s loss=0.1250\n");
  assert.match(lines[6], /^\[progress\] distill 100\/100 \(100%\) 5\.0s loss=0\.1250\n$/);
});

Deno.test("on a terminal: a bar redrawn in place, ending with a newline", () => {
  const out: string[] = [];
  const clock = fakeClock();
  const progress = consoleProgress({ tty: true, now: clock.now, write: (t) => out.push(t) })("collect", 4);
  progress.update(1);
  clock.advance(200);
  progress.update(2);
  clock.advance(200);
  progress.update(4);
  progress.finish();
  assert.equal(out.length, 4);
  assert.ok(out.every((t) => t.startsWith("\r\x1b[2K[")));
  assert.ok(out[1].includes("[############............] collect 2/4 (50%)"));
  assert.ok(out[3].endsWith("\n") && out[3].includes("4/4 (100%)"));
});

Deno.test("durations are formatted for humans", () => {
  assert.equal(formatDuration(12_345), "12.3s");
  assert.equal(formatDuration(185_000), "3m05s");
  assert.equal(formatDuration(3_720_000), "1h02m");
});
