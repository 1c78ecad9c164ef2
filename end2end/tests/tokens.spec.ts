import { expect, signIn, test } from "./server";

test("a token made on the tokens page is shown once, sends events, and stops working when revoked", async ({ page, context, server, baseURL }) => {
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: baseURL });
  await signIn(page);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Tokens" }).click();
  await expect(page).toHaveURL(/\/tokens$/);
  await expect(page.getByText("No API tokens yet.")).toBeVisible();

  await page.getByLabel("Name").fill("billing-app");
  await page.getByLabel("Scope").selectOption("ingest");
  await page.getByRole("button", { name: "Create token" }).click();
  const shown = page.getByRole("status", { name: "New token" });
  await expect(shown).toContainText("billing-app (ingest)");
  const token = await shown.getByLabel("Token value").inputValue();
  expect(token).toMatch(/^twt_/);
  await shown.getByRole("button", { name: "Copy" }).click();
  await expect(shown.getByRole("button", { name: "Copied" })).toBeVisible();
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(token);

  const row = page.getByRole("table", { name: "API tokens" }).getByRole("row").filter({ hasText: "billing-app" });
  await expect(row).toContainText("never");

  // The token sends, and cannot read.
  const send = () =>
    fetch(`${server.url}/api/v1/events`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ action: "invoice.create", description: "sent with billing-app" }),
    });
  expect((await send()).status).toBe(201);
  const read = await fetch(`${server.url}/api/v1/events`, { headers: { Authorization: `Bearer ${token}` } });
  expect(read.status).toBe(403);

  // A name already taken is refused with a message.
  await page.getByLabel("Name").fill("billing-app");
  await page.getByRole("button", { name: "Create token" }).click();
  await expect(page.getByRole("alert")).toContainText("exists already");

  await row.getByRole("button", { name: "Revoke billing-app" }).click();
  await expect(row).toContainText("revoked");
  expect((await send()).status).toBe(401);

  // Both changes are in the chain, by the signed-in admin.
  await page.goto("/events?q=action:token.*");
  await expect(page.getByRole("table").locator("tbody tr")).toHaveCount(2);
});
