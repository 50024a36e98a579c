// Starts a fresh otpd for the end-to-end suites under e2e/: the binary from
// OTPD_BIN, or one built once per test process with `go build ./cmd/otpd`
// from the repository root. Shared by e2e/medusa-js-sdk and
// e2e/supertokens-web-js (imported by relative path).
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const listenRE = /otpd listening.*addr=(\S+)/;
const signals = ["SIGTERM", "SIGINT", "SIGHUP"];

export const PUBLISHABLE_KEY = "pk_test_sdk";

// builtBin is the binary built for this process when OTPD_BIN is unset: one
// `go build` however many otpd instances a suite starts.
let builtBin;

export function otpdBinary() {
  if (process.env.OTPD_BIN) return process.env.OTPD_BIN;
  if (!builtBin) {
    const dir = mkdtempSync(join(tmpdir(), "otpd-bin-"));
    const bin = join(dir, "otpd");
    try {
      execFileSync("go", ["build", "-o", bin, "./cmd/otpd"], { cwd: repoRoot, stdio: "pipe" });
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`go build ./cmd/otpd failed:\n${err.stderr ?? err.message}`);
    }
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
    builtBin = bin;
  }
  return builtBin;
}

// envWithoutOtpd is this process's environment without its OTPD_* variables:
// a developer's shell or CI must not change the server under test.
export function envWithoutOtpd() {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("OTPD_")));
}

// createApiKey makes an API key with `otpd keys create args...` in the
// database of an otpd started with {dir}, as an operator does on the host,
// and returns the key.
export function createApiKey(dir, args) {
  const env = { ...envWithoutOtpd(), OTPD_DATABASE_URL: `sqlite://${join(dir, "otpd.db")}` };
  const out = execFileSync(otpdBinary(), ["keys", "create", ...args], { env }).toString();
  const key = out.split("\n")[0].trim();
  if (!key.startsWith("otpd_sk_")) throw new Error(`otpd keys create printed no key: ${out}`);
  return key;
}

// startOtpd runs `otpd serve --dev` on a loopback port with a SQLite database
// in a new temporary directory and resolves once it listens. env holds extra
// OTPD_* variables; they override the defaults below. With dir, the database
// lives there and outlives stop (for a restart); with addr, otpd listens on
// that address instead of a free port.
export async function startOtpd({ env: extraEnv = {}, dir: keepDir, addr: listen = "127.0.0.1:0" } = {}) {
  const bin = otpdBinary();
  const dir = keepDir ?? mkdtempSync(join(tmpdir(), "otpd-e2e-"));
  const removeDir = () => {
    if (!keepDir) rmSync(dir, { recursive: true, force: true });
  };

  const env = envWithoutOtpd();
  Object.assign(env, {
    OTPD_DATABASE_URL: `sqlite://${join(dir, "otpd.db")}`,
    OTPD_PUBLISHABLE_KEYS: PUBLISHABLE_KEY,
    // Every request comes from 127.0.0.1: lift the per-IP limits.
    OTPD_LIMIT_IP_SEND: "100000/5m",
    OTPD_LIMIT_IP_VERIFY: "100000/5m",
    OTPD_LIMIT_IP_PASSWORD: "100000/5m",
  });
  Object.assign(env, extraEnv);

  const child = spawn(bin, ["serve", "--dev", "--addr", listen], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.resume();
  // Should the test process end without running stop (a crash, or the test
  // runner's SIGTERM when its output pipe closes), do not leave otpd running.
  const killOnExit = () => child.kill("SIGKILL");
  const killOnSignal = (signal) => {
    child.kill("SIGKILL");
    removeDir();
    process.exit(signal === "SIGINT" ? 130 : 143);
  };
  const forget = () => {
    process.removeListener("exit", killOnExit);
    for (const s of signals) process.removeListener(s, killOnSignal);
  };
  process.once("exit", killOnExit);
  for (const s of signals) process.once(s, killOnSignal);
  const logs = [];
  const echo = process.env.OTPD_SDK_LOGS === "1";
  const exited = new Promise((res) => child.once("exit", (code, signal) => res({ code, signal })));

  const started = new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`otpd did not start in 30 s:\n${logs.join("\n")}`)), 30_000);
    createInterface({ input: child.stderr }).on("line", (line) => {
      logs.push(line);
      if (echo) process.stderr.write(`otpd: ${line}\n`);
      const m = listenRE.exec(line);
      if (m) {
        clearTimeout(timer);
        res(m[1]);
      }
    });
    child.once("error", (err) => {
      clearTimeout(timer);
      rej(err);
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      rej(new Error(`otpd exited (${code ?? signal}) before listening:\n${logs.join("\n")}`));
    });
  });
  let addr;
  try {
    addr = await started;
  } catch (err) {
    child.kill("SIGKILL");
    forget();
    removeDir();
    throw err;
  }

  let stopped = false;
  return {
    baseUrl: `http://${addr}`,
    logs,
    // running is false once otpd has exited.
    running: () => child.exitCode === null && child.signalCode === null,
    async stop() {
      if (stopped) return;
      stopped = true;
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const kill = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(kill);
      }
      forget();
      removeDir();
    },
  };
}
