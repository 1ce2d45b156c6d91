// Reads the checks.json files the conformance suite wrote for one scenario run (`-o DIR`) and
// prints one line, `PASSED FAILED WARNINGS`, then one line per failed check: `  CHECK-ID: MESSAGE`.
// Used by scripts/conformance.sh; plain Node, no dependencies.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

const MAX_MESSAGE = 400;

function checkFiles(dir) {
  let found = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) found = found.concat(checkFiles(path));
    else if (name === "checks.json") found.push(path);
  }
  return found;
}

const dir = process.argv[2];
let passed = 0;
let warnings = 0;
const failures = [];
for (const file of checkFiles(dir)) {
  for (const check of JSON.parse(readFileSync(file, "utf8"))) {
    if (check.status === "SUCCESS") passed += 1;
    if (check.status === "WARNING") warnings += 1;
    if (check.status === "FAILURE") {
      const message = String(check.errorMessage ?? check.description ?? "").replace(/\s+/g, " ");
      const short = message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)}...` : message;
      failures.push(`  ${check.id}: ${short}`);
    }
  }
}
console.log(`${passed} ${failures.length} ${warnings}`);
for (const line of failures) console.log(line);
