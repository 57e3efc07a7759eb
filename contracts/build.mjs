// Compiles contracts/sol/*.sol with the pinned solc-js and writes one artifact per contract to
// contracts/out/<Name>.json (ABI, init and runtime bytecode, storage layout).
//
//   node build.mjs          regenerate contracts/out/
//   node build.mjs --check  compile into memory and fail when contracts/out/ differs
//
// The artifacts are committed so the Rust crate builds without node; --check (run by
// scripts/test-all.sh) keeps them honest. Settings are fixed here, not taken from the
// environment, so every machine produces the same bytes.
import { readFileSync, readdirSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const solc = require("solc");

const PINNED = "0.8.37";
const version = solc.version();
if (!version.startsWith(PINNED + "+")) {
  console.error(`error: solc-js ${version} is installed, contracts/package.json pins ${PINNED}`);
  process.exit(2);
}

const srcDir = join(here, "sol");
const outDir = join(here, "out");
const sources = {};
for (const f of readdirSync(srcDir).filter((f) => f.endsWith(".sol")).sort()) {
  sources[f] = { content: readFileSync(join(srcDir, f), "utf8") };
}

const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    // No metadata hash: the bytecode then depends only on sources and settings, not on
    // file paths or comments' whitespace in the metadata JSON.
    metadata: { bytecodeHash: "none", appendCBOR: false },
    outputSelection: {
      "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "storageLayout"] },
    },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length > 0) process.exit(1);

const artifacts = {};
for (const [file, contracts] of Object.entries(output.contracts)) {
  for (const [name, c] of Object.entries(contracts)) {
    // Interfaces have no code; nothing deploys them.
    if (c.evm.bytecode.object.length === 0) continue;
    const layout = (c.storageLayout?.storage || []).map((s) => ({
      label: s.label,
      slot: s.slot,
      offset: s.offset,
      type: s.type,
    }));
    artifacts[name] = JSON.stringify(
      {
        contractName: name,
        source: `contracts/sol/${file}`,
        compiler: `solc-js ${version}`,
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
        deployedBytecode: "0x" + c.evm.deployedBytecode.object,
        storageLayout: layout,
      },
      null,
      2,
    ) + "\n";
  }
}

if (process.argv.includes("--check")) {
  const stale = [];
  for (const [name, text] of Object.entries(artifacts)) {
    const path = join(outDir, `${name}.json`);
    if (!existsSync(path) || readFileSync(path, "utf8") !== text) stale.push(path);
  }
  const extra = existsSync(outDir)
    ? readdirSync(outDir).filter((f) => f.endsWith(".json") && !(f.slice(0, -5) in artifacts))
    : [];
  if (stale.length > 0 || extra.length > 0) {
    for (const p of stale) console.error(`error: ${p} differs from a fresh compile`);
    for (const f of extra) console.error(`error: contracts/out/${f} has no source contract`);
    console.error("run `bash scripts/contracts.sh build` and commit contracts/out/");
    process.exit(1);
  }
  console.log(`contracts/out/ matches a fresh compile (${Object.keys(artifacts).length} contracts, ${version})`);
} else {
  mkdirSync(outDir, { recursive: true });
  for (const [name, text] of Object.entries(artifacts)) writeFileSync(join(outDir, `${name}.json`), text);
  console.log(`wrote ${Object.keys(artifacts).length} artifacts to contracts/out/ (${version})`);
}
