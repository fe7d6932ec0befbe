import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import ts from 'typescript';

/**
 * The layer rule of docs/architecture.md: a module (a folder of src/, or a
 * file at its top) imports only modules below it in this table, and no file
 * takes part in an import cycle. Type-only imports count for the layers (a
 * type is a dependency too); cycles are looked for among the imports that
 * run, the ones that fail with "used before initialisation".
 */
const layers = ['errors', 'observe', 'state', 'pki', 'trust', 'access', 'config', 'acme', 'edge', 'tls', 'telemetry', 'proxy', 'admin', 'instance', 'supervisor', 'cli'] as const;

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const src = join(root, 'src');

interface Edge {
  readonly from: string;
  readonly to: string;
  readonly typeOnly: boolean;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** The relative imports and re-exports of a file, as paths under src/, each marked when it carries types only. */
function importsOf(file: string): Edge[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, false);
  const edges: Edge[] = [];
  const add = (specifier: ts.Expression | undefined, typeOnly: boolean) => {
    if (!specifier || !ts.isStringLiteral(specifier) || !specifier.text.startsWith('.')) return;
    edges.push({ from: file, to: resolve(dirname(file), specifier.text.replace(/\.js$/, '.ts')), typeOnly });
  };
  for (const statement of source.statements) {
    if (ts.isImportDeclaration(statement)) {
      const clause = statement.importClause;
      const named = clause?.namedBindings && ts.isNamedImports(clause.namedBindings) ? clause.namedBindings.elements : null;
      // `import { type A, type B }` erases like `import type { A, B }`; a bare `import './x.js'` runs
      const typeOnly = clause !== undefined && (clause.isTypeOnly || (!clause.name && named !== null && named.length > 0 && named.every((n) => n.isTypeOnly)));
      add(statement.moduleSpecifier, typeOnly);
    } else if (ts.isExportDeclaration(statement)) {
      const named = statement.exportClause && ts.isNamedExports(statement.exportClause) ? statement.exportClause.elements : null;
      add(statement.moduleSpecifier, statement.isTypeOnly || (named !== null && named.length > 0 && named.every((n) => n.isTypeOnly)));
    }
  }
  return edges;
}

const moduleOf = (file: string): string => {
  const path = relative(src, file);
  return path.includes('/') ? (path.split('/')[0] as string) : path.replace(/\.ts$/, '');
};
const show = (file: string) => relative(root, file);

const files = sourceFiles(src);
const edges = files.flatMap(importsOf);

/** Strongly connected components of more than one file (Tarjan), over the given edges. */
function cycles(over: readonly Edge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const e of over) next.set(e.from, [...(next.get(e.from) ?? []), e.to]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let counter = 0;
  const visit = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) found.push(component.map(show).sort());
    }
  };
  for (const f of files) if (!index.has(f)) visit(f);
  return found;
}

describe('layers', () => {
  test('every module of src/ has a place in the table', () => {
    const unknown = [...new Set(files.map(moduleOf))].filter((m) => !(layers as readonly string[]).includes(m));
    assert.deepEqual(unknown, [], `add these modules to the layer table (here and in docs/architecture.md): ${unknown.join(', ')}`);
  });

  test('every import points to a module below its own', () => {
    const rank = (m: string) => (layers as readonly string[]).indexOf(m);
    const upward = edges
      .filter((e) => moduleOf(e.from) !== moduleOf(e.to) && rank(moduleOf(e.to)) >= rank(moduleOf(e.from)))
      .map((e) => `${show(e.from)} imports ${show(e.to)}${e.typeOnly ? ' (types)' : ''}: ${moduleOf(e.to)} is not below ${moduleOf(e.from)}`);
    assert.deepEqual(upward, [], 'move the code to the lower module, or declare an interface in the lower module that the higher one implements');
  });

  test('another module is imported through its index.ts only', () => {
    const inside = edges.filter((e) => moduleOf(e.from) !== moduleOf(e.to) && relative(src, e.to).includes('/') && !e.to.endsWith('/index.ts')).map((e) => `${show(e.from)} imports ${show(e.to)}`);
    assert.deepEqual(inside, [], 'export what is needed from the module\'s index.ts and import that');
  });

  test('no import that runs takes part in a cycle', () => {
    assert.deepEqual(cycles(edges.filter((e) => !e.typeOnly)), [], 'break these cycles: import the defining file rather than the barrel, or move the shared piece down');
  });

  test('the checks see imports of every kind (the checker itself can fail)', () => {
    const kinds = new Set(edges.map((e) => (e.typeOnly ? 'type' : 'value')));
    assert.deepEqual([...kinds].sort(), ['type', 'value']);
    assert.deepEqual(cycles([{ from: files[0] as string, to: files[1] as string, typeOnly: false }, { from: files[1] as string, to: files[0] as string, typeOnly: false }]).length, 1);
  });

  test('docs/architecture.md lists the same layers in the same order', () => {
    const doc = readFileSync(join(root, 'docs/architecture.md'), 'utf8');
    const table = /```layers\n([\s\S]*?)```/.exec(doc)?.[1] ?? '';
    const listed = table
      .split('\n')
      .map((l) => /^src\/([a-z-]+)(?:\.ts|\/)/.exec(l.trim())?.[1])
      .filter((m): m is string => m !== undefined);
    assert.deepEqual(listed, [...layers], 'keep the ```layers block of docs/architecture.md in step with this table (bottom up)');
  });
});
