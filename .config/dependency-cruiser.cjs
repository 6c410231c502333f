// The layers of the server (docs/architecture.md, "Layers"), checked by `npm run lint`: a folder
// may import its own files and those of lower floors only, folders on one floor never import each
// other, and no import cycle exists anywhere in the workspace.
const FLOORS = [
  ['config', 'errors', 'async'],
  ['pg'],
  ['storage', 'db'],
  ['status'],
  ['where'],
  ['shapes'],
  ['http', 'replication', 'dev'],
  // The WebSocket transport answers with the HTTP transport's request checks and shape answers
  // (no second copy of either), so it stands one floor above it.
  ['ws'],
];
const SERVER = '^server/src/';
const folder = (name) => `${SERVER}${name}/`;

const layerRules = FLOORS.flatMap((floor, level) =>
  floor.map((name) => {
    const above = FLOORS.slice(level + 1).flat();
    const beside = floor.filter((other) => other !== name);
    return {
      name: `layer-${name}`,
      comment: `server/src/${name}/ imports only its own floor's files and lower floors (not ${[...beside, ...above].join(', ')}, nor app.ts or main.ts)`,
      severity: 'error',
      from: { path: folder(name) },
      to: { path: [...beside, ...above].map(folder).concat(`${SERVER}[^/]+\\.ts$`) },
    };
  }),
);

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'An import cycle ties modules together so that neither can change alone.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-test-code-in-builds',
      comment:
        'Code that ships never imports tests, test-only generators (*-testing.ts) or contract suites (*-contract.ts).',
      severity: 'error',
      from: { pathNot: ['\\.test\\.ts$', '-testing\\.ts$', '-contract\\.ts$', '^test/'] },
      to: { path: ['\\.test\\.ts$', '-testing\\.ts$', '-contract\\.ts$', '^test/'] },
    },
    {
      name: 'packages-stand-alone',
      comment:
        'The protocol package, the client and the server meet only through @sluice/protocol.',
      severity: 'error',
      from: { path: '^(packages|client)/' },
      to: { path: '^(server|client|test)/', pathNot: '^client/' },
    },
    {
      name: 'client-not-server',
      severity: 'error',
      from: { path: '^client/' },
      to: { path: '^server/' },
    },
    ...layerRules,
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)(dist|dist-test|node_modules)/' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    combinedDependencies: true,
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['source', 'import', 'types', 'default'],
      extensions: ['.ts', '.js', '.mjs'],
    },
  },
};
