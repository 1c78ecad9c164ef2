import { expect, signIn, test } from "./server";

test("the usage page measures a number in the events by group, sorts the table and keeps its choices in the URL", async ({ page, server }) => {
  const run = (user: string, tokens: number | string) => ({
    action: "agent.run",
    user: { id: user },
    metadata: { tokens_used: tokens, model: "large" },
  });
  await server.post([run("agent-7", 4000), run("agent-7", 1400), run("agent-3", 800), run("agent-3", 900), run("agent-3", "n/a")]);
  await signIn(page);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Usage" }).click();
  await expect(page).toHaveURL(/\/usage$/);
  await expect(page.getByRole("heading", { name: "Usage", exact: true })).toBeVisible();

  await page.getByLabel("Number").fill("metadata.tokens_used");
  await page.getByLabel("Number").press("Enter");
  await expect(page).toHaveURL(/field=metadata\.tokens_used/);
  await page.getByLabel("Group by").fill("user_id");
  await page.getByLabel("Group by").press("Enter");
  await expect(page).toHaveURL(/by=user_id/);
  await page.getByLabel("Events matching").fill("action:agent.run");
  await page.getByLabel("Events matching").press("Enter");
  await expect(page).toHaveURL(/q=action%3Aagent\.run/);
  // Sum first: it ranks the groups.
  const chips = page.getByRole("group", { name: "Statistics" });
  // From p95, avg, count: the last one cannot be taken off, so sum joins before count leaves.
  for (const [stat, pressed] of [["p95", "false"], ["avg", "false"], ["sum", "true"], ["count", "false"], ["count", "true"]]) {
    const chip = chips.getByRole("button", { name: stat, exact: true });
    await chip.click();
    await expect(chip).toHaveAttribute("aria-pressed", pressed);
  }
  await expect(page).toHaveURL(/stats=sum,count/);

  await expect(page.getByRole("status").filter({ hasText: "events matched" })).toContainText("5 events matched: 4 with a number in metadata.tokens_used, 0 without it, 1 not numeric");
  const table = page.getByRole("table", { name: "Groups" });
  const rows = table.getByRole("row");
  await expect(rows.nth(1)).toContainText("agent-7");
  await expect(rows.nth(1)).toContainText("5,400");
  await expect(rows.nth(2)).toContainText("agent-3");
  await expect(rows.nth(2)).toContainText("1,700");
  await expect(page.getByRole("img", { name: /sum of metadata\.tokens_used over time/ })).toBeVisible();

  // Sorting by the group name puts agent-3 first; the choices survive a reload.
  await table.getByRole("button", { name: "Group" }).click();
  await table.getByRole("button", { name: "Group" }).click();
  await expect(rows.nth(1)).toContainText("agent-3");
  await page.reload();
  await expect(page.getByLabel("Group by")).toHaveValue("user_id");
  await expect(rows.nth(1)).toContainText("agent-7");
});
