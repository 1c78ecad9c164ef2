import { expect, signIn, test, TOKEN } from "./server";

test("a wrong token is refused with a message", async ({ page }) => {
  await page.goto("/login");
  await page.getByLabel("Admin token").fill("not-the-token");
  await page.getByRole("button", { name: "Use the admin token" }).click();
  await expect(page.getByRole("alert")).toContainText("not valid");
  await expect(page).toHaveURL(/\/login$/);
});

test("signing in with the admin token opens the live dashboard, signing out closes it", async ({ page }) => {
  await signIn(page);
  await expect(page.getByRole("heading", { name: "Live activity" })).toBeVisible();
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === "tw_session");
  expect(session?.httpOnly).toBe(true);
  expect(session?.sameSite).toBe("Strict");

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/login$/);
  await page.goto("/");
  await expect(page).toHaveURL(/\/login$/);
});

test("the server renders the feed, so the page is useful before any script runs", async ({ browser, server }) => {
  await server.post({ action: "report.export", user: { id: "dana" }, description: "rendered on the server" });
  const context = await browser.newContext({ javaScriptEnabled: false, baseURL: server.url });
  const page = await context.newPage();
  await page.goto("/login");
  await page.getByLabel("Admin token").fill(TOKEN);
  await page.getByRole("button", { name: "Use the admin token" }).click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByRole("list", { name: "Live activity" })).toContainText("rendered on the server");
  await context.close();
});
