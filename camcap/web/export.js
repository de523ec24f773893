// A caption history as files: plain text, WebVTT, SubRip and JSON Lines.
//
// Cue rules (the same as the CLI's video subtitles): a cue runs from the capture time of its
// frame to the capture time of the next caption's frame; the last one runs to its own end (when
// it was last known to hold); identical consecutive captions are one cue (CaptionHistory already
// merged them). Cue times count from the start of the session; JSON Lines also carries wall-clock
// times.

/** @typedef {import("./history.js").HistoryEntry} HistoryEntry */

/**
 * @param {{entries: HistoryEntry[], startedAt: number | null}} history
 * @returns {{index: number, start: number, end: number, text: string, entry: HistoryEntry}[]}
 *   start and end in seconds from the start of the session
 */
export function cues(history) {
  const origin = history.startedAt ?? history.entries[0]?.startAt ?? 0;
  return history.entries.map((entry, i) => {
    const next = history.entries[i + 1];
    const start = Math.max(0, entry.startAt - origin) / 1000;
    let end = ((next ? next.startAt : entry.endAt) - origin) / 1000;
    // Clocks can step backwards; a cue still needs a positive length to be valid.
    if (!(end > start)) end = start + 0.001;
    return { index: i + 1, start, end, text: cueText(entry), entry };
  });
}

/** The words of an entry as a cue shows them: a question above its answer; no blank lines. */
function cueText(entry) {
  const text = entry.label ? `${entry.label}\n${entry.text}` : entry.text;
  // A blank line ends a cue in both VTT and SRT: fold any inside the text.
  return text.replace(/\r\n?/g, "\n").replace(/\n\s*\n/g, "\n").trim() || "…";
}

/** "01:02:03.456" (VTT) or "01:02:03,456" (SRT). */
function timestamp(seconds, separator) {
  const ms = Math.round(seconds * 1000);
  const pad = (n, width = 2) => String(n).padStart(width, "0");
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = Math.floor((ms % 60_000) / 1000);
  return `${pad(h)}:${pad(m)}:${pad(s)}${separator}${pad(ms % 1000, 3)}`;
}

export function toVtt(history) {
  // Cue text is HTML-like in WebVTT: escape what would start a tag or an entity, and "-->".
  const escape = (text) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const body = cues(history)
    .map((cue) => `${cue.index}\n${timestamp(cue.start, ".")} --> ${timestamp(cue.end, ".")}\n${escape(cue.text)}\n`)
    .join("\n");
  return `WEBVTT\n\n${body}`;
}

export function toSrt(history) {
  return cues(history)
    .map((cue) => `${cue.index}\n${timestamp(cue.start, ",")} --> ${timestamp(cue.end, ",")}\n${cue.text}\n`)
    .join("\n");
}

export function toJsonl(history) {
  return cues(history)
    .map(({ start, end, entry }) =>
      JSON.stringify({
        start: round3(start),
        end: round3(end),
        text: entry.text,
        task: entry.task,
        question: entry.label,
        captured_at: new Date(entry.startAt).toISOString(),
        last_captured_at: new Date(entry.lastAt).toISOString(),
        ended_at: new Date(entry.endAt).toISOString(),
        repeats: entry.count,
        // Alerts raised on this caption (alerts.js), only where there were some.
        ...(entry.alerts?.length
          ? { alerts: entry.alerts.map((a) => ({ ...a, at: new Date(a.at).toISOString() })) }
          : {}),
      }),
    )
    .map((line) => `${line}\n`)
    .join("");
}

/** One line per entry, oldest first: "[14:02:03] text (×3, 12 s)". */
export function toText(history) {
  return history.entries.map((entry) => `${entryLine(entry)}\n`).join("");
}

/** What "Copy" puts on the clipboard for one entry. */
export function entryLine(entry) {
  const when = new Date(entry.startAt).toLocaleTimeString([], { hour12: false });
  const question = entry.label ? `${entry.label} ` : "";
  const repeats = entry.count > 1 ? ` (×${entry.count}, ${formatDuration(entry.endAt - entry.startAt)})` : "";
  const alerts = (entry.alerts ?? []).map((a) => ` [alert: ${a.rule} ${a.state}]`).join("");
  return `[${when}] ${question}${entry.text}${repeats}${alerts}`;
}

/** "12 s", "3 min 4 s", "1 h 2 min". */
export function formatDuration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function round3(x) {
  return Math.round(x * 1000) / 1000;
}

export const FORMATS = {
  txt: { render: toText, type: "text/plain" },
  vtt: { render: toVtt, type: "text/vtt" },
  srt: { render: toSrt, type: "application/x-subrip" },
  jsonl: { render: toJsonl, type: "application/jsonl" },
};

/** Save the history as a file through the browser's download. */
export function download(history, format, now = new Date()) {
  const { render, type } = FORMATS[format];
  const blob = new Blob([render(history)], { type: `${type};charset=utf-8` });
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  const stamp = now.toISOString().slice(0, 19).replace(/[-:]/g, "").replace("T", "-");
  link.href = url;
  link.download = `camcap-${stamp}.${format}`;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // The download has started from the URL by now; free the blob a little later all the same.
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
