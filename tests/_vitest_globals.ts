/**
 * Just enough of Vitest's globals (`describe`, `it`, `test`, `.each`,
 * `.skip`, the four hooks and `expect`, from `npm:expect`) to run a
 * Jest-style suite, such as `@langchain/langgraph-checkpoint-validation`,
 * inside `deno test`: suites become test steps, hooks run as Vitest runs them.
 */
import { expect } from "expect";

type Fn = () => unknown;
type TestFn = (...args: unknown[]) => unknown;

interface TestNode {
  kind: "test";
  name: string;
  fn: TestFn;
  args: unknown[];
  skip: boolean;
}

interface SuiteNode {
  kind: "suite";
  name: string;
  skip: boolean;
  children: (SuiteNode | TestNode)[];
  beforeAll: Fn[];
  afterAll: Fn[];
  beforeEach: Fn[];
  afterEach: Fn[];
}

/** Tests seen, by outcome. */
export interface RunCounts {
  passed: number;
  failed: number;
  skipped: number;
}

function suite(name: string, skip = false): SuiteNode {
  return {
    kind: "suite",
    name,
    skip,
    children: [],
    beforeAll: [],
    afterAll: [],
    beforeEach: [],
    afterEach: [],
  };
}

/** Formats a `.each` title as Vitest does (`%s`, `%i`, `%d`, `%j`, `$field`). */
function title(template: string, args: unknown[]): string {
  const first = args[0];
  if (args.length === 1 && typeof first === "object" && first !== null && !Array.isArray(first)) {
    return template.replace(/\$([\w.]+)/g, (_, path: string) => {
      let value: unknown = first;
      for (const part of path.split(".")) value = (value as Record<string, unknown>)?.[part];
      return typeof value === "string" ? value : JSON.stringify(value);
    });
  }
  let i = 0;
  return template.replace(/%[sidjo%]/g, (token) => {
    if (token === "%%") return "%";
    const value = args[i++];
    return token === "%s" ? String(value) : JSON.stringify(value);
  });
}

function rowArgs(row: unknown): unknown[] {
  return Array.isArray(row) ? row : [row];
}

/**
 * A collector of Jest-style suites. {@linkcode VitestGlobals.install} puts its
 * functions on `globalThis`; {@linkcode VitestGlobals.run} runs what was
 * declared as steps of a Deno test.
 */
export class VitestGlobals {
  readonly root: SuiteNode = suite("");
  readonly counts: RunCounts = { passed: 0, failed: 0, skipped: 0 };
  #current: SuiteNode = this.root;

  /** Defines `describe`, `it`, `test`, the hooks and `expect` on `globalThis`. */
  install(): void {
    const addSuite = (name: string, body: () => void, skip = false) => {
      const node = suite(name, skip || this.#current.skip);
      this.#current.children.push(node);
      const parent = this.#current;
      this.#current = node;
      try {
        body();
      } finally {
        this.#current = parent;
      }
    };
    const addTest = (name: string, fn: TestFn, args: unknown[] = [], skip = false) => {
      this.#current.children.push({
        kind: "test",
        name,
        fn,
        args,
        skip: skip || this.#current.skip,
      });
    };
    const describe = Object.assign(addSuite, {
      each: (rows: unknown[]) => (template: string, body: (...args: unknown[]) => void) => {
        for (const row of rows) {
          const args = rowArgs(row);
          addSuite(title(template, args), () => body(...args));
        }
      },
      skip: (name: string, body: () => void) => addSuite(name, body, true),
    });
    const it = Object.assign((name: string, fn: TestFn) => addTest(name, fn), {
      each: (rows: unknown[]) => (template: string, fn: TestFn) => {
        for (const row of rows) {
          const args = rowArgs(row);
          addTest(title(template, args), fn, args);
        }
      },
      skip: (name: string, fn: TestFn) => addTest(name, fn, [], true),
    });
    const hook = (which: "beforeAll" | "afterAll" | "beforeEach" | "afterEach") => (fn: Fn) => {
      this.#current[which].push(fn);
    };
    Object.assign(globalThis, {
      describe,
      it,
      test: it,
      beforeAll: hook("beforeAll"),
      afterAll: hook("afterAll"),
      beforeEach: hook("beforeEach"),
      afterEach: hook("afterEach"),
      expect: Object.assign(expect, { soft: expect }),
    });
  }

  /** Runs the declared suites as steps of `t`. */
  async run(t: Deno.TestContext): Promise<RunCounts> {
    await this.#runSuite(this.root, t, []);
    return this.counts;
  }

  async #runSuite(node: SuiteNode, t: Deno.TestContext, outer: SuiteNode[]): Promise<void> {
    const chain = [...outer, node];
    for (const fn of node.beforeAll) await fn();
    try {
      for (const child of node.children) {
        if (child.kind === "suite") {
          await t.step({
            name: child.name,
            fn: (inner) => this.#runSuite(child, inner, chain),
            sanitizeOps: false,
            sanitizeResources: false,
          });
        } else {
          await this.#runTest(child, t, chain);
        }
      }
    } finally {
      for (const fn of node.afterAll) await fn();
    }
  }

  async #runTest(node: TestNode, t: Deno.TestContext, chain: SuiteNode[]): Promise<void> {
    if (node.skip) {
      this.counts.skipped++;
      await t.step({ name: node.name, ignore: true, fn: () => {} });
      return;
    }
    const ok = await t.step({
      name: node.name,
      fn: async () => {
        for (const s of chain) for (const fn of s.beforeEach) await fn();
        try {
          await node.fn(...node.args);
        } finally {
          for (const s of [...chain].reverse()) for (const fn of s.afterEach) await fn();
        }
      },
      sanitizeOps: false,
      sanitizeResources: false,
    });
    if (ok) this.counts.passed++;
    else this.counts.failed++;
  }
}
