// A small inline SVG line of the last minute's samples (one a second).
const SVG = "http://www.w3.org/2000/svg";
export const SAMPLES = 60;

export function sparkline(samples, label) {
  const width = 120, height = 24;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("class", "spark");
  svg.setAttribute("role", "img");
  const max = Math.max(1, ...samples);
  const title = document.createElementNS(SVG, "title");
  title.textContent = `${label}: last ${samples.at(-1) ?? 0}, at most ${Math.max(0, ...samples)} over the last minute`;
  svg.append(title);
  svg.setAttribute("aria-label", title.textContent);
  if (samples.length > 1) {
    const step = width / (SAMPLES - 1);
    const start = SAMPLES - samples.length;
    const points = samples.map((v, i) =>
      `${((start + i) * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", points.join(" "));
    svg.append(line);
  }
  return svg;
}
