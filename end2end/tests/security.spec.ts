import { expect, feed, signIn, test, TOKEN } from "./server";
import http from "node:http";
import { once } from "node:events";
import type { Page } from "@playwright/test";

// Payloads that would run if any of them reached the page as HTML or a link.
const IMG = `<img src=x onerror="window.__xss='img'">`;
const SCRIPT = `<script>window.__xss='script'</script>`;
const SVG = `<svg onload="window.__xss='svg'"></svg>`;
const LINK = `javascript:window.__xss='link'`;

/** Fails if anything ran (the marker is set) or an element was made from a payload. */
async function expectInert(page: Page): Promise<void> {
  const found = await page.evaluate(() => ({
    marker: (window as unknown as { __xss?: string }).__xss ?? null,
    images: document.querySelectorAll('img[src="x"]').length,
    svgs: document.querySelectorAll("svg[onload]").length,
    links: document.querySelectorAll('a[href^="javascript:"]').length,
  }));
  expect(found).toEqual({ marker: null, images: 0, svgs: 0, links: 0 });
}

test("events whose every field holds script payloads render as inert text everywhere", async ({ page, server }) => {
  page.on("dialog", (d) => {
    throw new Error(`a dialog opened: ${d.message()}`);
  });
  await server.post({
    action: `xss.${SCRIPT}`,
    level: "critical",
    outcome: "denied",
    user: { id: `u${IMG}`, username: SVG },
    entity: { type: SCRIPT, id: LINK, name: IMG },
    request: { method: "GET", path: LINK, ip: "10.0.0.1", userAgent: SCRIPT },
    location: { country: IMG, city: SVG },
    description: `payload ${IMG} ${SCRIPT} ${LINK}`,
    metadata: { note: IMG, url: LINK, nested: { html: SCRIPT } },
    correlationId: IMG,
    sessionId: SVG,
    changes: { role: { before: IMG, after: SCRIPT } },
  });
  await signIn(page);
  // The live feed, rendered on the server and hydrated.
  await expect(page.getByRole("list", { name: "Live activity" })).toContainText(`payload ${IMG}`);
  // The overview's charts: the actor's name is text, its link a query with the id encoded.
  const topUsers = page.getByRole("list", { name: "Top users" });
  await expect(topUsers.getByRole("link", { name: `u${IMG}` })).toHaveAttribute(
    "href",
    /^\/events\?user_id=u%3Cimg%20src%3Dx%20onerror%3D/,
  );
  await expectInert(page);

  // The explorer's table, with the payload searched and highlighted.
  await page.goto("/events?q=payload");
  const rows = page.getByRole("table").locator("tbody tr");
  await expect(rows).toHaveCount(1);
  await expect(rows.first()).toContainText(SCRIPT);
  await expectInert(page);

  // The detail dialog shows every field.
  await rows.first().click();
  const dialog = page.getByRole("dialog");
  await expect(dialog).toBeVisible();
  await expect(dialog).toContainText(LINK);
  await expect(dialog).toContainText(SVG);
  await expectInert(page);

  // Exports carry the text as data: CSV cells and JSON strings, never markup for a browser.
  const csv = await fetch(`${server.url}/api/v1/events/export?format=csv&q=payload`, {
    headers: { Authorization: `Bearer ${TOKEN}` },
  });
  expect(csv.headers.get("content-type")).toContain("text/csv");
  expect(csv.headers.get("x-content-type-options")).toBe("nosniff");
  expect(await csv.text()).toContain("payload");
});

test("a page on another origin cannot act with the dashboard's session", async ({ page, server }) => {
  await signIn(page);
  // Another port on the same host: the same site, so SameSite=Strict still sends the cookie.
  const evil = http.createServer((_, res) => {
    res.setHeader("Content-Type", "text/html");
    res.end(`<!doctype html><body>
      <form id="f" method="post" action="${server.url}/api/fn/logout"></form>
      <script>
        fetch("${server.url}/api/fn/create_token", {
          method: "POST", mode: "no-cors", credentials: "include",
          headers: { "Content-Type": "text/plain" },
          body: JSON.stringify({ name: "stolen", scope: "admin" }),
        }).finally(() => document.getElementById("f").submit());
      </script></body>`);
  });
  evil.listen(0, "127.0.0.1");
  await once(evil, "listening");
  const port = (evil.address() as import("node:net").AddressInfo).port;
  try {
    const logout = page.waitForResponse((r) => r.url().endsWith("/api/fn/logout"));
    await page.goto(`http://127.0.0.1:${port}/`);
    expect((await logout).status()).toBe(403);
    // The refused form post is now the page: let it finish loading before leaving it.
    await page.waitForURL(/\/api\/fn\/logout$/);
    await expect(page.locator("body")).toContainText("cross_origin");
  } finally {
    evil.close();
  }
  // Nothing was made, and the session still works.
  const tokens = await fetch(`${server.url}/api/v1/tokens`, { headers: { Authorization: `Bearer ${TOKEN}` } });
  expect((await tokens.json()).tokens).toEqual([]);
  await page.goto("/");
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByRole("heading", { name: "Live activity" })).toBeVisible();
});

test("a page on another origin cannot read the trail over the socket, and the dashboard's own socket still streams", async ({ page, server }) => {
  await server.post({ action: "secret.read", user: { id: "victim" }, description: "only for the dashboard" });
  await signIn(page);
  // A page on another port of the same host is the same site: the SameSite cookie rides along.
  const evil = http.createServer((_, res) => {
    res.setHeader("Content-Type", "text/html");
    res.end(`<!doctype html><body><script>
      window.__socket = new Promise((resolve) => {
        const ws = new WebSocket("${server.url.replace("http", "ws")}/ws/audit?sinceSeq=0");
        let got = "";
        ws.onmessage = (m) => { got += m.data; };
        ws.onclose = () => resolve({ opened: got.length > 0, got });
        ws.onerror = () => {};
      });
    </script></body>`);
  });
  evil.listen(0, "127.0.0.1");
  await once(evil, "listening");
  const port = (evil.address() as import("node:net").AddressInfo).port;
  try {
    const other = await page.context().newPage();
    await other.goto(`http://127.0.0.1:${port}/`);
    const result = await other.evaluate(() => (window as unknown as { __socket: Promise<{ opened: boolean; got: string }> }).__socket);
    expect(result.got).not.toContain("secret.read");
    expect(result.opened).toBe(false);
    await other.close();
  } finally {
    evil.close();
  }
  // The dashboard's own socket, same origin, still delivers a new event within moments.
  await expect(page.getByRole("status", { name: "Connection: live" })).toBeVisible();
  await server.post({ action: "after.probe", user: { id: "ops" }, description: "still streaming" });
  await expect(feed(page)).toContainText("still streaming");
});

test("every page runs under its nonce policy without a single violation", async ({ page, server }) => {
  const violations: string[] = [];
  page.on("console", (m) => {
    if (m.text().includes("Content Security Policy")) violations.push(`${page.url()}: ${m.text()}`);
  });
  await server.post({ action: "report.export", user: { id: "dana" }, description: "something to chart" });
  await signIn(page);
  // Pages with a live socket show it is up once the module, the WASM and the socket ran.
  for (const [path, heading, live] of [
    ["/", "Overview", true],
    ["/events", null, true],
    ["/replay", null, false],
    ["/alerts", "Alerts", true],
    ["/tokens", "API tokens", false],
    ["/users", "Users", false],
    ["/settings", "Settings", false],
    ["/api-docs", "API reference", false],
    ["/usage", "Usage", false],
  ] as const) {
    const response = await page.goto(path);
    expect(response?.headers()["content-security-policy"]).toMatch(/script-src 'self' 'nonce-[\w-]+' 'wasm-unsafe-eval'/);
    if (heading) await expect(page.getByRole("heading", { name: heading, exact: true })).toBeVisible();
    if (live) await expect(page.getByRole("status", { name: /Connection: live/ })).toBeVisible();
    await page.waitForLoadState("networkidle");
  }
  expect(violations).toEqual([]);
});
