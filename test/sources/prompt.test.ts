import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { checkPromptColumns, compilePrompt } from '../../sources/prompt.ts';
import { expectThrows } from '../helpers/expect-error.ts';

const expectError = (fn: () => unknown, code: string, message: string) => expectThrows(fn, { code, message });

/** Reference renderer: one left-to-right regex pass over escapes and placeholders. */
function referenceRender(template: string, fields: Record<string, string>): string {
  return template.replace(/\{\{|\}\}|\{([^{}]+)\}/g, (m, name?: string) => (m === '{{' ? '{' : m === '}}' ? '}' : fields[name!]));
}

test('placeholders are filled, escapes become literal braces', () => {
  const fields = { prompt: 'Is 2+2=4? {not a placeholder}', gold: 'True', 'with space': 'ws' };
  const cases = [
    'Q: {prompt}\nA:',
    '{prompt}',
    '{{prompt}}',
    '{{{prompt}}}',
    'JSON: {{"q": "{prompt}", "g": "{gold}"}}',
    '{prompt}{gold}{prompt}',
    '{with space} }} {{',
    'no placeholders at all',
    '',
  ];
  for (const source of cases) {
    const t = compilePrompt(source);
    assert.is(t.source, source);
    assert.is(t.render(fields), referenceRender(source, fields), source);
  }
  assert.is(compilePrompt('{{{prompt}}}').render(fields), `{${fields.prompt}}`);
  assert.equal(compilePrompt('{gold} {prompt} {gold}').columns, ['gold', 'prompt']);
  assert.equal(compilePrompt('{{gold}}').columns, []);
});

test('field values are inserted verbatim, never interpreted', () => {
  const t = compilePrompt('<{prompt}>');
  for (const v of ['${process.exit(1)}', '{gold}', '{{', '$&', '$1', '']) assert.is(t.render({ prompt: v }), `<${v}>`);
});

test('lone braces and empty placeholders are CONFIG errors at `where`', () => {
  const where = 'pipeline.yaml:4 (prompt)';
  expectError(() => compilePrompt('a { b', where), 'CONFIG', `${where}: prompt template has a lone "{" at character 3 (write "{{" for a literal brace)`);
  expectError(() => compilePrompt('{a {b}', where), 'CONFIG', `${where}: prompt template has a lone "{" at character 1 (write "{{" for a literal brace)`);
  expectError(() => compilePrompt('x}', where), 'CONFIG', `${where}: prompt template has a lone "}" at character 2 (write "}}" for a literal brace)`);
  expectError(() => compilePrompt('{p}}'), 'CONFIG', 'prompt template has a lone "}" at character 4 (write "}}" for a literal brace)');
  expectError(() => compilePrompt('ab{}', where), 'CONFIG', `${where}: prompt template has an empty placeholder "{}" at character 3; name a column, e.g. {prompt}`);
  expectError(() => compilePrompt('{ }'), 'CONFIG', 'prompt template has an empty placeholder "{ }" at character 1; name a column, e.g. {prompt}');
});

test('checkPromptColumns names the unknown column and the dataset columns', () => {
  const t = compilePrompt('{prompt} {foo}');
  checkPromptColumns(compilePrompt('{prompt}: {gold}'), ['prompt', 'gold']);
  expectError(() => checkPromptColumns(t, ['prompt', 'gold'], 'pipeline.yaml:7'), 'CONFIG', 'pipeline.yaml:7: prompt uses {foo} but the dataset has columns prompt, gold');
  expectError(() => checkPromptColumns(compilePrompt('{a}{b}'), ['prompt']), 'CONFIG', 'prompt uses {a}, {b} but the dataset has columns prompt');
  expectError(() => compilePrompt('{prompt} {gold}').render({ prompt: 'x' }), 'DATASET', 'record has no column "gold" used by the prompt template');
  expectError(() => compilePrompt('{toString}').render({ prompt: 'x' }), 'DATASET', 'record has no column "toString" used by the prompt template');
});

test.run();
