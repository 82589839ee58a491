/**
 * Keeping the READMEs true: their TypeScript examples are type-checked against the built packages
 * (as a user's project sees them, through `exports`) and run with Node; their lists of error codes
 * are compared with the codes of the package's `errors.ts`. Shared by the packages' tests (an
 * example that imports several packages is checked from the package that documents it).
 */
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as TypeScript from 'typescript';

/** The workspace's compiler, where it is installed (the GPU machine carries no TypeScript). */
function loadTypescript(): typeof TypeScript | undefined {
  try {
    return createRequire(import.meta.url)('typescript') as typeof TypeScript;
  } catch {
    return undefined;
  }
}
const ts = loadTypescript();
/** Whether checkSnippet can run here: skip example tests where it cannot. */
export const typescriptAvailable = ts !== undefined;

export const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

export interface CodeBlock {
  /** The fence's language word ('ts', 'sh', '' …). */
  lang: string;
  code: string;
  /** The last `#` heading above the block. */
  heading: string;
}

/** The fenced code blocks of a Markdown file, in order. */
export function codeBlocks(markdownPath: string): CodeBlock[] {
  const blocks: CodeBlock[] = [];
  let heading = '';
  let open: CodeBlock | null = null;
  for (const line of readFileSync(markdownPath, 'utf8').split('\n')) {
    const fence = /^```(\w*)\s*$/.exec(line);
    if (open !== null) {
      if (fence !== null && fence[1] === '') {
        blocks.push(open);
        open = null;
      } else open.code += `${line}\n`;
    } else if (fence !== null) open = { lang: fence[1]!, code: '', heading };
    else if (/^#+ /.test(line)) heading = line.replace(/^#+ /, '').trim();
  }
  return blocks;
}

/** Every `ERR_GPUPOOL_…` code named in a file (a wildcard such as `ERR_GPUPOOL_WORKERS_*` is not a code). */
export function errorCodesIn(path: string): Set<string> {
  const codes = readFileSync(path, 'utf8').match(/\bERR_GPUPOOL_[A-Z0-9_]*[A-Z0-9]\b/g) ?? [];
  return new Set(codes);
}

/** The codes a package's errors.ts gives its classes: its `'ERR_GPUPOOL_…'` string literals. */
export function errorCodesOfSource(errorsTsPath: string): Set<string> {
  const text = readFileSync(errorsTsPath, 'utf8');
  return new Set([...text.matchAll(/'(ERR_GPUPOOL_[A-Z0-9_]+)'/g)].map((m) => m[1]!));
}

export interface SnippetRun {
  /** tsc's errors, one line each (empty: it type-checks). */
  typeErrors: string[];
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Type-checks the `.ts` files with the workspace's compiler options, compiles them to `.js`, and runs
 * `entry` with Node, in a folder of its own whose node_modules links the named workspace packages
 * (package name → its folder), so imports resolve to their built `dist` as in a user's project.
 * Files ending in `.js` are written as they are.
 */
export function checkSnippet(options: {
  files: Record<string, string>;
  packages: Record<string, string>;
  entry: string;
  timeoutMs?: number;
}): SnippetRun {
  if (ts === undefined) throw new Error('checkSnippet needs the typescript package');
  for (const dir of Object.values(options.packages)) {
    if (!existsSync(join(dir, 'dist')))
      throw new Error(`${dir} has no dist: build it first (turbo runs build before test)`);
  }
  const root = mkdtempSync(join(tmpdir(), 'gpupool-readme-'));
  try {
    writeFileSync(join(root, 'package.json'), '{ "type": "module", "private": true }\n');
    for (const [name, dir] of Object.entries(options.packages)) {
      const link = join(root, 'node_modules', name);
      mkdirSync(dirname(link), { recursive: true });
      symlinkSync(dir, link, 'dir');
    }
    const tsFiles: string[] = [];
    for (const [name, code] of Object.entries(options.files)) {
      writeFileSync(join(root, name), code);
      if (name.endsWith('.ts')) tsFiles.push(join(root, name));
    }
    const compilerOptions = workspaceCompilerOptions(ts);
    const program = ts.createProgram(tsFiles, { ...compilerOptions, noEmit: true });
    const typeErrors = ts.getPreEmitDiagnostics(program).map((d) => {
      const where =
        d.file !== undefined && d.start !== undefined
          ? `${d.file.fileName.slice(root.length + 1)}:${d.file.getLineAndCharacterOfPosition(d.start).line + 1}: `
          : '';
      return `${where}${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
    for (const file of tsFiles) {
      const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), { compilerOptions });
      writeFileSync(file.replace(/\.ts$/, '.js'), outputText);
    }
    const entry = join(root, options.entry.replace(/\.ts$/, '.js'));
    const run = spawnSync(process.execPath, [entry], {
      cwd: root,
      encoding: 'utf8',
      timeout: options.timeoutMs ?? 30_000,
    });
    return { typeErrors, status: run.status, stdout: run.stdout, stderr: run.stderr };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** tsconfig.base.json's options, with @types/node from the workspace. */
function workspaceCompilerOptions(ts: typeof TypeScript): TypeScript.CompilerOptions {
  const configPath = join(REPO_ROOT, 'tsconfig.base.json');
  const { config, error } = ts.readConfigFile(configPath, ts.sys.readFile);
  if (error !== undefined) throw new Error(ts.flattenDiagnosticMessageText(error.messageText, '\n'));
  const parsed = ts.convertCompilerOptionsFromJson(config.compilerOptions, REPO_ROOT, configPath);
  return {
    ...parsed.options,
    declaration: false,
    typeRoots: [join(REPO_ROOT, 'node_modules', '@types')],
  };
}
