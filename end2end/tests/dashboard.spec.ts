import { expect, signIn, test, TOKEN } from "./server";

test("a burst raises the spike anomaly live and lands in the heatmap's current cell", async ({ page, server }) => {
  await signIn(page);
  // The sign-in is recorded, so it counts (and fills the heatmap) like the burst.
  const signedInAt = Date.now();
  await expect(page.getByText("Nothing unusual right now")).toBeVisible();
  const stat = (label: string) => page.getByLabel(new RegExp(`^${label}: `));
  await expect(stat("Events")).toHaveAttribute("aria-label", "Events: 1");

  const now = Date.now();
  const burst = Array.from({ length: 40 }, (_, i) => ({
    timestamp: now - i * 1000,
    action: "report.export",
    user: { id: ["alice", "bob", "carol"][i % 3] },
    description: `burst ${i}`,
  }));
  await server.post(burst);

  // Counted as each event arrives, then confirmed by the server's anomaly rules.
  await expect(stat("Events")).toHaveAttribute("aria-label", "Events: 41");
  const anomalies = page.getByRole("list", { name: "Anomalies" });
  // Between 22:00 and 06:00 UTC the burst is night activity as well: a second anomaly.
  await expect(anomalies.getByRole("listitem").filter({ hasText: "Activity spiked" })).toContainText(
    "Activity spiked to 41 actions/hour",
  );

  // The heatmap is in the browser's zone: the cell of this local hour holds every event
  // (they all happened within the last 40 seconds, so in this hour or the one before).
  const cells = await page.evaluate((times) => {
    const names: Record<string, number> = {};
    const day = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    for (const t of times) {
      const d = new Date(t);
      const date = `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
      const key = `${day[d.getDay()]} ${date} ${String(d.getHours()).padStart(2, "0")}:00`;
      names[key] = (names[key] ?? 0) + 1;
    }
    return names;
  }, [signedInAt, ...burst.map((e) => e.timestamp)]);
  for (const [cell, count] of Object.entries(cells)) {
    await expect(page.getByRole("img", { name: `${cell}: ${count} events` })).toBeVisible();
  }
});

test("the range picker changes what the cards count", async ({ page, server }) => {
  const hour = 3_600_000;
  await server.post([
    { timestamp: Date.now() - 3 * 24 * hour, action: "old.thing", outcome: "denied" },
    { action: "new.thing", level: "critical", outcome: "failure", user: { id: "dave" } },
  ]);
  await signIn(page);
  const stat = (label: string) => page.getByLabel(new RegExp(`^${label}: `));
  // The last day holds new.thing and the sign-in.
  await expect(stat("Events")).toHaveAttribute("aria-label", "Events: 2");
  await expect(stat("Critical")).toHaveAttribute("aria-label", "Critical: 1");
  await expect(page.getByRole("list", { name: "Recent critical events" }).getByRole("link")).toContainText("new.thing");

  await page.getByRole("button", { name: "7 days" }).click();
  await expect(page.getByRole("button", { name: "7 days" })).toHaveAttribute("aria-pressed", "true");
  await expect(stat("Events")).toHaveAttribute("aria-label", "Events: 3");
  await expect(stat("Denial rate")).toHaveAttribute("aria-label", "Denial rate: 33.3%");
  await expect(page.getByRole("list", { name: "Top denied actions" }).getByRole("listitem")).toHaveAccessibleName("old.thing: 1");

  // A recent critical event opens its detail dialog.
  await page.getByRole("list", { name: "Recent critical events" }).getByRole("link").click();
  await expect(page.getByRole("dialog")).toContainText("new.thing");
  // Its risk score was assigned at ingest; the dialog says by which rules.
  const risk = page.getByRole("dialog").locator("#risk-section");
  await expect(risk.getByRole("row")).toHaveText([/Level\s*level critical\s*\+\s*50/, /Outcome\s*outcome failure\s*\+\s*20/, /Score\s*70/]);
});

test("a denial raises a toast, and the alert log acknowledges it", async ({ page, server }) => {
  await signIn(page);
  await server.post({ action: "vault.open", outcome: "denied", user: { id: "mallory" } });
  const toast = page.getByRole("region", { name: "New alerts" }).getByRole("alert");
  await expect(toast).toContainText("vault.open denied for mallory");
  await expect(page.getByRole("banner")).toHaveClass(/flash-/);

  await toast.getByRole("link", { name: "All alerts" }).click();
  const row = page.getByRole("list", { name: "Alert log" }).getByRole("listitem").filter({ hasText: "vault.open denied" });
  await expect(row).toHaveCount(1);
  await row.getByRole("button", { name: "Acknowledge" }).click();
  await expect(row).toContainText("acknowledged");
  await page.getByLabel("Unacknowledged only").check();
  await expect(page.getByText("No alerts.")).toBeVisible();
});

test("the alert log shows a new alert as it is raised, without reloading", async ({ page, server }) => {
  await signIn(page);
  await page.goto("/alerts");
  await expect(page.getByRole("status", { name: "Connection: live" })).toBeVisible();
  await server.post({ action: "door.unlock", outcome: "failure", user: { id: "trudy" } });
  const row = page.getByRole("list", { name: "Alert log" }).getByRole("listitem").filter({ hasText: "door.unlock" });
  // The list is reread when the socket reports the alert; its timed refresh is a minute away.
  await expect(row).toHaveCount(1, { timeout: 5_000 });
  await expect(row).toHaveAttribute("aria-label", /^critical: /);
});

test("each source has its bar, which opens the explorer on that source's events", async ({ page, server }) => {
  await server.post([{ action: "file.read" }, { action: "file.write" }]);
  // An OpenTelemetry log record, in OTLP's JSON encoding, from a service with a resource.
  const otlp = await fetch(`${server.url}/v1/logs`, {
    method: "POST",
    headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify({
      resourceLogs: [{
        resource: { attributes: [
          { key: "service.name", value: { stringValue: "billing" } },
          { key: "host.name", value: { stringValue: "app-7" } },
        ] },
        scopeLogs: [{ logRecords: [{
          eventName: "invoice.void", severityNumber: 13, body: { stringValue: "invoice 17 voided" },
          attributes: [{ key: "user.id", value: { stringValue: "carol" } }],
        }] }],
      }],
    }),
  });
  expect(otlp.status, await otlp.clone().text()).toBe(200);
  await signIn(page);
  const sources = page.getByRole("list", { name: "By source" });
  await expect(sources.getByRole("listitem", { name: "otlp: 1" })).toBeVisible();
  await expect(sources.getByRole("listitem", { name: /^http: \d+$/ })).toBeVisible();
  await sources.getByRole("link", { name: "otlp" }).click();
  await expect(page).toHaveURL(/\/events\?source=otlp/);
  const rows = page.getByRole("table").locator("tbody tr");
  await expect(rows).toHaveCount(1);
  await expect(rows.first()).toContainText("invoice.void");
  const dialog = page.getByRole("dialog");
  // The click does something once the page is hydrated.
  await expect(async () => {
    await rows.first().click();
    await expect(dialog).toBeVisible({ timeout: 1000 });
  }).toPass();
  await expect(dialog).toContainText("invoice 17 voided");
  const system = dialog.locator("section", { has: page.getByRole("heading", { name: "System", exact: true }) });
  await expect(system).toContainText(/Service\s*billing/);
  await expect(system).toContainText(/Host\s*app-7/);
});
