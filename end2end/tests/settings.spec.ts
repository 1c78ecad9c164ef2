import { expect, signIn, test, TOKEN } from "./server";

test("an admin changes retention on the settings page, and the change is in effect and in the chain", async ({ page, server }) => {
  await signIn(page);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Settings" }).click();
  await expect(page).toHaveURL(/\/settings$/);
  const days = page.getByLabel("Keep events for (days)");
  await expect(days).toHaveValue("365");
  await days.fill("90");
  await page.getByRole("button", { name: "Save settings" }).click();
  await expect(page.getByRole("status").filter({ hasText: "Saved and in effect." })).toBeVisible();
  await expect(page.getByText(/Last saved here by admin/)).toBeVisible();

  // A reload shows what runs now; the chain holds the change with its before and after.
  await page.reload();
  await expect(page.getByLabel("Keep events for (days)")).toHaveValue("90");
  const r = await fetch(`${server.url}/api/v1/events?action=settings.change`, {
    headers: { Authorization: `Bearer ${TOKEN}` },
  });
  const body = await r.json();
  expect(body.items[0].changes.retentionDays).toEqual({ before: 365, after: 90 });
});
