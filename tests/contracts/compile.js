// tests/contracts/compile.js SOLC_DIR SRC_DIR OUT_DIR: the solc standard-JSON
// compile behind build.sh, writing Hardhat-format artifacts.
'use strict';
const fs = require('fs');
const path = require('path');

const [solcDir, srcDir, outDir] = process.argv.slice(2);
const solc = require(solcDir);

const sources = {};
for (const f of fs.readdirSync(srcDir).sort()) {
  if (f.endsWith('.sol')) {
    sources[`contracts/${f}`] = { content: fs.readFileSync(path.join(srcDir, f), 'utf8') };
  }
}
const input = {
  language: 'Solidity',
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'paris',
    outputSelection: {
      '*': { '*': ['abi', 'evm.bytecode.object', 'evm.bytecode.linkReferences',
                   'evm.deployedBytecode.object', 'evm.deployedBytecode.linkReferences'] },
    },
  },
};

function findImports(p) {
  const rel = p.startsWith('contracts/') ? p.slice('contracts/'.length) : p;
  const full = path.join(srcDir, rel);
  if (fs.existsSync(full)) return { contents: fs.readFileSync(full, 'utf8') };
  return { error: `not found: ${p}` };
}

const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
let failed = false;
for (const e of output.errors || []) {
  if (e.severity === 'error') failed = true;
  process.stderr.write(e.formattedMessage || e.message);
}
if (failed) process.exit(1);

let n = 0;
for (const [sourceName, contracts] of Object.entries(output.contracts)) {
  for (const [name, c] of Object.entries(contracts)) {
    const dir = path.join(outDir, sourceName);
    fs.mkdirSync(dir, { recursive: true });
    const artifact = {
      _format: 'hh-sol-artifact-1',
      contractName: name,
      sourceName,
      abi: c.abi,
      bytecode: '0x' + c.evm.bytecode.object,
      deployedBytecode: '0x' + c.evm.deployedBytecode.object,
      linkReferences: c.evm.bytecode.linkReferences || {},
      deployedLinkReferences: c.evm.deployedBytecode.linkReferences || {},
    };
    fs.writeFileSync(path.join(dir, `${name}.json`), JSON.stringify(artifact, null, 2) + '\n');
    n++;
  }
}
process.stdout.write(`compiled ${n} contracts into ${outDir}\n`);
