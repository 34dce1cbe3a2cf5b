// Inline SVG charts (no library): horizontal bars and line charts.

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, value);
  if (text !== undefined) el.textContent = text;
  return el;
}

function chart(width, height, label) {
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, class: "chart" });
  root.append(svg("title", {}, label));
  return root;
}

/**
 * Horizontal bar chart.
 * @param {{label: string, value: number, kind?: string}[]} bars - kind "good" or "bad" picks the colour.
 * @param {string} label - accessible description.
 */
export function barChart(bars, label) {
  const rowHeight = 22;
  const labelWidth = 150;
  const width = 480;
  const height = Math.max(1, bars.length) * rowHeight + 4;
  const max = Math.max(1, ...bars.map((b) => b.value));
  const root = chart(width, height, label);
  bars.forEach((bar, index) => {
    const y = index * rowHeight + 2;
    const length = ((width - labelWidth - 50) * bar.value) / max;
    root.append(svg("text", { x: labelWidth - 6, y: y + 15, "text-anchor": "end", class: "axis" }, bar.label));
    root.append(svg("rect", { x: labelWidth, y: y + 3, width: Math.max(1, length), height: rowHeight - 6, class: `bar ${bar.kind || ""}` }));
    root.append(svg("text", { x: labelWidth + length + 6, y: y + 15, class: "value" }, String(bar.value)));
  });
  return root;
}

function nice(value) {
  if (!Number.isFinite(value)) return "";
  const abs = Math.abs(value);
  return abs >= 100 || abs === 0 ? value.toFixed(0) : abs >= 1 ? value.toFixed(2) : value.toPrecision(2);
}

/**
 * Line chart of one or more series sharing the axes.
 * @param {{name: string, points: number[][], className: string, markers?: boolean}[]} series - points are [x, y].
 * @param {{label: string, xLabel: string, yLabel: string}} text
 */
export function lineChart(series, { label, xLabel, yLabel }) {
  const width = 480;
  const height = 220;
  const pad = { left: 52, right: 12, top: 22, bottom: 40 };
  const all = series.flatMap((s) => s.points);
  const root = chart(width, height, label);
  if (!all.length) {
    root.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "axis" }, "no points yet"));
    return root;
  }
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1];
  const px = (x) => pad.left + ((x - x0) / (x1 - x0)) * (width - pad.left - pad.right);
  const py = (y) => height - pad.bottom - ((y - y0) / (y1 - y0)) * (height - pad.top - pad.bottom);
  root.append(svg("line", { x1: pad.left, y1: height - pad.bottom, x2: width - pad.right, y2: height - pad.bottom, class: "axis-line" }));
  root.append(svg("line", { x1: pad.left, y1: pad.top, x2: pad.left, y2: height - pad.bottom, class: "axis-line" }));
  for (const y of [y0, (y0 + y1) / 2, y1]) {
    root.append(svg("text", { x: pad.left - 4, y: py(y) + 4, "text-anchor": "end", class: "axis" }, nice(y)));
  }
  for (const x of [x0, x1]) {
    root.append(svg("text", { x: px(x), y: height - pad.bottom + 14, "text-anchor": "middle", class: "axis" }, nice(x)));
  }
  root.append(svg("text", { x: (pad.left + width - pad.right) / 2, y: height - 16, "text-anchor": "middle", class: "axis" }, xLabel));
  root.append(svg("text", { x: 4, y: 12, class: "axis" }, yLabel));
  let legendX = pad.left;
  for (const s of series) {
    const sorted = s.points.slice().sort((a, b) => a[0] - b[0]);
    if (sorted.length > 1) {
      root.append(svg("polyline", { points: sorted.map((p) => `${px(p[0])},${py(p[1])}`).join(" "), class: `line ${s.className}` }));
    }
    if (s.markers || sorted.length === 1) {
      for (const p of sorted) root.append(svg("circle", { cx: px(p[0]), cy: py(p[1]), r: 3.5, class: `dot ${s.className}` }));
    }
    root.append(svg("rect", { x: legendX, y: height - 10, width: 10, height: 4, class: `swatch ${s.className}` }));
    root.append(svg("text", { x: legendX + 14, y: height - 5, class: "axis" }, `${s.name} (${s.points.length})`));
    legendX += 130;
  }
  return root;
}
