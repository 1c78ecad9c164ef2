import { expect, signIn, test } from "./server";
import type { Page } from "@playwright/test";
import { readFileSync } from "node:fs";

const rows = (page: Page) => page.getByRole("table").locator("tbody tr");
const search = (page: Page) => page.getByRole("searchbox", { name: "Search events" });

/** Opens the explorer and waits until it is hydrated and following live events. */
async function openExplorer(page: Page, path = "/events"): Promise<void> {
  await page.goto(path);
  await expect(page.getByRole("status", { name: "Connection: live" })).toBeVisible();
}

test.beforeEach(async ({ server }) => {
  await server.post([
    { action: "payroll.read", user: { id: "alice" }, outcome: "denied", level: "error", description: "Access denied to the payroll export" },
    { action: "report.export", user: { id: "bob" }, description: "Quarterly report exported" },
    { action: "auth.login", user: { id: "carol" }, outcome: "failure", description: "Login failed: wrong password", correlationId: "req-7" },
    { action: "auth.login", user: { id: "carol" }, description: "Login succeeded after retry", correlationId: "req-7" },
  ]);
});

test("a query searches on the server and highlights what matched", async ({ page }) => {
  await signIn(page);
  await openExplorer(page);
  // The four posted events and the sign-in, which Trailwatch records as its own event.
  await expect(rows(page)).toHaveCount(5);

  await search(page).fill("payroll -user:bob");
  await search(page).press("Enter");
  await expect(page).toHaveURL(/q=payroll/);
  await expect(rows(page)).toHaveCount(1);
  await expect(rows(page).first().locator("mark").first()).toHaveText(/payroll/i);

  // Bad syntax says what is wrong and does not search.
  await search(page).fill('"unclosed');
  await search(page).press("Enter");
  await expect(page.getByRole("alert")).toContainText("never closed");
  await expect(rows(page)).toHaveCount(1);
  await expect(page).toHaveURL(/q=payroll/);
});

test("the keyboard opens the detail dialog, which copies its raw JSON and closes with Esc", async ({ page, context, baseURL }) => {
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: baseURL });
  await signIn(page);
  await openExplorer(page);
  await expect(rows(page)).toHaveCount(5);

  await page.keyboard.press("j");
  await page.keyboard.press("j");
  await expect(rows(page).nth(1)).toHaveAttribute("aria-selected", "true");
  await page.keyboard.press("Enter");
  const dialog = page.getByRole("dialog");
  await expect(dialog).toBeVisible();
  await expect(page).toHaveURL(/\/events\/[0-9a-f-]{36}/);
  await expect(dialog.getByRole("heading", { name: "auth.login" })).toBeVisible();
  await expect(dialog.getByText("✓ verified")).toBeVisible();
  // The other event of the same request is one click away.
  await expect(dialog.getByRole("link", { name: /auth\.login/ })).toHaveCount(1);

  await dialog.getByRole("button", { name: "Copy JSON" }).click();
  await expect(dialog.getByText("Copied")).toBeVisible();
  const copied = JSON.parse(await page.evaluate(() => navigator.clipboard.readText()));
  expect(copied.action).toBe("auth.login");
  expect(page.url()).toContain(copied.eventId);

  await page.keyboard.press("Escape");
  await expect(dialog).toHaveCount(0);
  await expect(page).toHaveURL(/\/events$/);

  // `/` puts the cursor in the search box.
  await page.keyboard.press("/");
  await expect(search(page)).toBeFocused();
});

test("a copied URL reopens the same view, and back returns to the previous one", async ({ page }) => {
  await signIn(page);
  await openExplorer(page);
  await page.getByRole("group", { name: "Outcome" }).getByRole("button", { name: "failure" }).click();
  await expect(rows(page)).toHaveCount(1);
  await search(page).fill("login");
  await search(page).press("Enter");
  await expect(page).toHaveURL(/outcome=failure/);
  await expect(page).toHaveURL(/q=login/);
  const url = page.url();

  const again = await page.context().newPage();
  await openExplorer(again, url);
  await expect(search(again)).toHaveValue("login");
  await expect(again.getByRole("group", { name: "Outcome" }).getByRole("button", { name: "failure" })).toHaveAttribute("aria-pressed", "true");
  await expect(rows(again)).toHaveCount(1);
  await expect(rows(again).first()).toContainText("Login failed");

  await page.goBack();
  await expect(search(page)).toHaveValue("");
  await expect(rows(page)).toHaveCount(1);
  await page.goBack();
  await expect(rows(page)).toHaveCount(5);
});

test("a new matching event streams in live and a non-matching one does not", async ({ page, server }) => {
  await signIn(page);
  await openExplorer(page, "/events?q=user:alice");
  await expect(rows(page)).toHaveCount(1);

  await server.post({ action: "file.read", user: { id: "bob" }, description: "bob reads a file" });
  await server.post({ action: "file.read", user: { id: "alice" }, description: "alice reads a file" });
  await expect(rows(page).first()).toContainText("alice reads a file");
  await expect(rows(page)).toHaveCount(2);
  await expect(page.getByText("bob reads a file")).toHaveCount(0);

  // Paused, new matches wait behind the pill instead of moving the rows.
  await page.getByRole("button", { name: /Pause/ }).click();
  await expect(page).toHaveURL(/live=0/);
  await server.post({ action: "file.read", user: { id: "alice" }, description: "while paused" });
  const pill = page.getByRole("button", { name: /1 new event/ });
  await expect(pill).toBeVisible();
  await expect(rows(page)).toHaveCount(2);
  await pill.click();
  await expect(rows(page).first()).toContainText("while paused");
});

test("a view saved under a name reopens from the list and can be deleted", async ({ page }) => {
  await signIn(page);
  await openExplorer(page, "/events?q=login&outcome=failure");
  await expect(rows(page)).toHaveCount(1);

  const menu = page.locator("details.saved-views");
  await menu.getByText("Saved views", { exact: true }).click();
  await menu.getByLabel("Name this view").fill("Failed logins");
  await menu.getByRole("button", { name: "Save view" }).click();
  const saved = menu.getByRole("link", { name: "Failed logins" });
  await expect(saved).toBeVisible();

  await page.getByRole("button", { name: "Clear" }).click();
  await expect(rows(page)).toHaveCount(5);
  if (!(await saved.isVisible())) await menu.getByText("Saved views", { exact: true }).click();
  await saved.click();
  await expect(page).toHaveURL(/q=login/);
  await expect(rows(page)).toHaveCount(1);

  // Saved on the server: another page sees it.
  const other = await page.context().newPage();
  await openExplorer(other);
  const otherMenu = other.locator("details.saved-views");
  await otherMenu.getByText("Saved views", { exact: true }).click();
  await expect(otherMenu.getByRole("link", { name: "Failed logins" })).toBeVisible();
  await otherMenu.getByRole("button", { name: "Delete view Failed logins" }).click();
  await expect(otherMenu.getByRole("link", { name: "Failed logins" })).toHaveCount(0);
  await expect(otherMenu.getByText("No saved views yet.")).toBeVisible();
});

test("a custom time range that ends in the past shows its events and does not follow live", async ({ page }) => {
  await signIn(page);
  await openExplorer(page);
  await page.getByLabel("Time").selectOption("custom");
  await expect(page).toHaveURL(/range=custom/);
  const from = page.getByLabel("From", { exact: true });
  const to = page.getByLabel("To", { exact: true });
  await expect(to).toBeVisible();
  // Three days ago to two days ago: every event here is newer.
  const daysAgo = (days: number) =>
    page.evaluate((d) => {
      const t = Date.now() - d * 86_400_000;
      return new Date(t - new Date(t).getTimezoneOffset() * 60_000).toISOString().slice(0, 19);
    }, days);
  await from.fill(await daysAgo(3));
  await from.blur();
  await expect(page).toHaveURL(/from=/);
  await to.fill(await daysAgo(2));
  await to.blur();
  await expect(page).toHaveURL(/to=/);
  await expect(page.getByText("No events match.")).toBeVisible();
  await expect(page.getByRole("status", { name: /Connection:/ })).toHaveCount(0);
  await expect(page.getByRole("button", { name: "Pause" })).toHaveCount(0);
});

test("the export menu downloads the filtered events as OCSF records", async ({ page }) => {
  await signIn(page);
  await openExplorer(page, "/events?user_id=carol");
  await expect(rows(page)).toHaveCount(2);
  await page.getByText("Export", { exact: true }).click();
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("link", { name: "OCSF" }).click(),
  ]);
  expect(download.suggestedFilename()).toMatch(/\.ocsf\.json$/);
  const records = JSON.parse(readFileSync(await download.path(), "utf8"));
  // Both of carol's sign-ins, as OCSF Authentication / Logon records.
  expect(records.map((r: { type_uid: number }) => r.type_uid)).toEqual([300201, 300201]);
  expect(records.map((r: { status: string }) => r.status).sort()).toEqual(["Failure", "Success"]);
});
