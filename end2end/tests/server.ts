// Starts a real `trailwatch serve` per test on a free port with its own data directory, and
// lets a test kill and restart it. The fixture sets Playwright's baseURL to that server.
import { test as base, expect, Page } from "@playwright/test";
import { ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

const ROOT = path.resolve(__dirname, "../..");
const BIN = process.env.TRAILWATCH_BIN ?? path.join(ROOT, "target/release/trailwatch");
const SITE = process.env.TRAILWATCH_SITE_ROOT ?? path.join(ROOT, "target/site");
export const TOKEN = "e2e-admin-token";

async function freePort(): Promise<number> {
  const srv = net.createServer();
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  const port = (srv.address() as net.AddressInfo).port;
  srv.close();
  await once(srv, "close");
  return port;
}

export class TrailwatchServer {
  private proc?: ChildProcess;
  log = "";

  constructor(
    readonly port: number,
    readonly dataDir: string,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts the server and resolves once it is listening. */
  async start(): Promise<void> {
    const proc = spawn(
      BIN,
      ["serve", "--addr", `127.0.0.1:${this.port}`, "--data-dir", this.dataDir, "--site-root", SITE],
      {
        env: { ...process.env, TRAILWATCH_ADMIN_TOKEN: TOKEN, TRAILWATCH_LOG: "info" },
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    this.proc = proc;
    // Only this process's output counts: after a restart, `log` still holds the last run's.
    let output = "";
    await new Promise<void>((resolve, reject) => {
      proc.stderr!.on("data", (chunk: Buffer) => {
        output += chunk.toString();
        this.log += chunk.toString();
        if (output.includes("listening on")) resolve();
      });
      proc.once("exit", (code) => reject(new Error(`trailwatch exited (${code}):\n${output}`)));
    });
  }

  /** Kills the server (SIGKILL by default, like a crash) and waits for it to exit. */
  async stop(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null) return;
    const exited = once(proc, "exit");
    proc.kill(signal);
    await exited;
  }

  /** POSTs events with the admin token; fails the test unless they are stored. */
  async post(events: object | object[]): Promise<{ firstSeq: number; lastSeq: number }> {
    const r = await fetch(`${this.url}/api/v1/events`, {
      method: "POST",
      headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
      body: JSON.stringify(events),
    });
    expect(r.status, await r.clone().text()).toBe(201);
    return r.json();
  }
}

export const test = base.extend<{ server: TrailwatchServer }>({
  server: async ({}, use) => {
    const server = new TrailwatchServer(await freePort(), mkdtempSync(path.join(tmpdir(), "trailwatch-e2e-")));
    await server.start();
    await use(server);
    await server.stop();
  },
  baseURL: async ({ server }, use) => {
    await use(server.url);
  },
});

export { expect };

/** Signs in through the login page and waits for the live connection. */
export async function signIn(page: Page): Promise<void> {
  await page.goto("/");
  await expect(page).toHaveURL(/\/login$/);
  await page.getByLabel("Admin token").fill(TOKEN);
  await page.getByRole("button", { name: "Use the admin token" }).click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByRole("status", { name: "Connection: live" })).toBeVisible();
}

/** The live feed's list. */
export function feed(page: Page) {
  return page.getByRole("list", { name: "Live activity" });
}
