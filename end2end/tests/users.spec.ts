import { expect, signIn, test } from "./server";

const PASSWORD = "a long enough password";

test("an admin adds a self user, who signs in with a password and sees only their own activity", async ({ page, server }) => {
  await server.post([
    { action: "file.read", user: { id: "u-17" }, description: "alice read her file" },
    { action: "payroll.read", user: { id: "bob" }, description: "bob read the payroll" },
  ]);
  await signIn(page);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Users" }).click();
  await expect(page).toHaveURL(/\/users$/);
  await page.getByLabel("Name").fill("alice");
  await page.getByLabel("Role").selectOption("self");
  await page.getByLabel("Actor id in events").fill("u-17");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Add user" }).click();
  await expect(page.getByRole("status").filter({ hasText: "Added alice (self)." })).toBeVisible();
  await expect(page.getByRole("table", { name: "Users" })).toContainText("u-17");

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/login$/);
  await page.getByLabel("Name").fill("alice");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  // The self role lands on its own activity; the overview would show everyone's.
  await expect(page).toHaveURL(/\/events$/);
  const nav = page.getByRole("navigation", { name: "Main" });
  await expect(nav.getByRole("link")).toHaveText(["Explorer", "Usage", "Replay", "API"]);
  await expect(page.getByRole("status", { name: "Connection: live" })).toBeVisible();
  const rows = page.getByRole("table").locator("tbody tr");
  await expect(rows).toHaveCount(1);
  await expect(rows.first()).toContainText("alice read her file");

  // Live: bob's new event never arrives, alice's does.
  await server.post([
    { action: "payroll.export", user: { id: "bob" }, description: "bob exported the payroll" },
    { action: "file.write", user: { id: "u-17" }, description: "alice wrote her file" },
  ]);
  await expect(rows).toHaveCount(2);
  await expect(page.getByRole("table")).not.toContainText("bob");
});
