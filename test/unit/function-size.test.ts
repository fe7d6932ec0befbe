import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import ts from 'typescript';

/**
 * The instance and the control plane stay readable as a newcomer reads
 * them: no function there runs over 80 lines (docs/architecture.md). A long
 * function is split along its jobs, not wrapped.
 */
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const folders = ['src/instance', 'src/supervisor'];
const maxLines = 80;

function longFunctions(file: string, text = readFileSync(file, 'utf8')): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node) => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const from = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
      const lines = source.getLineAndCharacterOfPosition(node.end).line - from + 1;
      const name = node.name && ts.isIdentifier(node.name) ? node.name.text : '(anonymous)';
      if (lines > maxLines) found.push(`${relative(root, file)}:${from + 1} ${name}: ${lines} lines`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

test(`no function in ${folders.join(' or ')} is over ${maxLines} lines`, () => {
  const files = folders.flatMap((f) => readdirSync(join(root, f)).filter((n) => n.endsWith('.ts')).map((n) => join(root, f, n)));
  assert.ok(files.length > 10, 'the folders hold the sources');
  assert.deepEqual(files.flatMap((f) => longFunctions(f)), []);
});

test('the size check sees a long function, and only that', () => {
  const body = (n: number) => '  x();\n'.repeat(n);
  const text = `function long() {\n${body(maxLines)}}\nfunction short() {\n${body(maxLines - 2)}}\n`;
  assert.deepEqual(longFunctions(join(root, 'x.ts'), text), [`x.ts:1 long: ${maxLines + 2} lines`]);
});
