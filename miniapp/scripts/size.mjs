// Prints the JavaScript a build ships, raw and gzipped (zlib's default level, as a web server
// would send it), and fails when the gzipped total is over the budget.
// Usage: node scripts/size.mjs [build dir, default www] [budget in kB, default 300]
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { gzipSync } from "node:zlib";

const dir = process.argv[2] ?? "www";
const budgetKb = Number(process.argv[3] ?? 300);

function* files(folder) {
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) yield* files(path);
    else if (entry.name.endsWith(".js")) yield path;
  }
}

let raw = 0;
let gzipped = 0;
for (const path of files(dir)) {
  const bytes = readFileSync(path);
  const packed = gzipSync(bytes).length;
  raw += bytes.length;
  gzipped += packed;
  console.log(`${relative(dir, path)}: ${(bytes.length / 1000).toFixed(1)} kB, gzipped ${(packed / 1000).toFixed(1)} kB`);
}
if (raw === 0) {
  console.error(`no JavaScript under ${dir}: build it first`);
  process.exit(1);
}
const kb = gzipped / 1000;
console.log(`JavaScript in ${dir}: ${(raw / 1000).toFixed(1)} kB, gzipped ${kb.toFixed(1)} kB (budget ${budgetKb} kB)`);
if (kb > budgetKb) {
  console.error(`over the budget by ${(kb - budgetKb).toFixed(1)} kB`);
  process.exit(1);
}
