import { expect, feed, signIn, test } from "./server";

test("an event posted through the API appears in the feed without a reload", async ({ page, server }) => {
  await signIn(page);
  const stat = (label: string) => page.getByLabel(new RegExp(`^${label}: `));
  // The sign-in itself is the first event: Trailwatch audits its own dashboard.
  await expect(stat("Events")).toHaveAttribute("aria-label", "Events: 1");
  await expect(feed(page).getByRole("listitem").filter({ hasText: "signed in to the dashboard" })).toHaveCount(1);

  await server.post({
    action: "file.read",
    user: { id: "alice" },
    outcome: "denied",
    description: "tried to read /etc/shadow",
  });
  const item = feed(page).getByRole("listitem").filter({ hasText: "tried to read /etc/shadow" });
  await expect(item).toHaveCount(1);
  await expect(item).toContainText("alice");
  await expect(item).toContainText("denied");
  await expect(stat("Events")).toHaveAttribute("aria-label", "Events: 2");
  await expect(stat("Denial rate")).toHaveAttribute("aria-label", "Denial rate: 50.0%");
  // The header flashes red for a denial.
  await expect(page.getByRole("banner")).toHaveClass(/flash-/);
  await expect(page.getByText(/last event (just now|\d+ s ago)/)).toBeVisible();
});

test("several tabs receive the same events at once", async ({ page, context, server }) => {
  await signIn(page);
  const second = await context.newPage();
  await second.goto("/");
  await expect(second.getByRole("status", { name: "Connection: live" })).toBeVisible();

  await server.post([
    { action: "deploy.start", description: "tab check one" },
    { action: "deploy.finish", outcome: "failure", description: "tab check two" },
  ]);
  for (const p of [page, second]) {
    await expect(feed(p).getByRole("listitem").first()).toContainText("tab check two");
    await expect(feed(p).getByRole("listitem").nth(1)).toContainText("tab check one");
  }
});
