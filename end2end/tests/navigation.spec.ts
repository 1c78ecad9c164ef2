import { expect, signIn, test } from "./server";

const PAGES: [string, RegExp][] = [
  ["Live", /\/$/],
  ["Explorer", /\/events$/],
  ["Usage", /\/usage$/],
  ["Replay", /\/replay$/],
  ["Alerts", /\/alerts$/],
  ["Tokens", /\/tokens$/],
  ["Users", /\/users$/],
  ["Settings", /\/settings$/],
  ["API", /\/api-docs$/],
];

test("on a phone every page is one tap away from the menu, which marks the current page", async ({ page }) => {
  await page.setViewportSize({ width: 390, height: 844 });
  await signIn(page);
  const nav = page.getByRole("navigation", { name: "Main" });
  // Closed, the links take no room; the button names where the user is.
  await expect(nav).toBeHidden();
  for (const [label, url] of PAGES) {
    await page.getByRole("button", { name: /^Menu:/ }).click();
    await expect(nav).toBeVisible();
    await nav.getByRole("link", { name: label }).click();
    await expect(page).toHaveURL(url);
    const menu = page.getByRole("button", { name: `Menu: ${label}` });
    await expect(menu).toBeVisible();
    await expect(menu).toHaveAttribute("aria-expanded", "false");
    await menu.click();
    await expect(nav.getByRole("link", { name: label })).toHaveAttribute("aria-current", "page");
    await menu.click();
    await expect(nav).toBeHidden();
  }
  // Nothing is wider than the phone.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(0);
});

for (const width of [1280, 1440]) {
  test(`at ${width} px the top bar shows every page, the whole name and one-line buttons`, async ({ page, server }) => {
    await page.setViewportSize({ width, height: 900 });
    await signIn(page);
    // "last event just now" in the live badge is the widest the bar gets.
    await server.post({ action: "deploy.finish", user: { id: "ops" } });
    await expect(page.getByText(/last event (just now|\d+ s ago)/)).toBeVisible();
    const nav = page.getByRole("navigation", { name: "Main" });
    await expect(nav.getByRole("link")).toHaveText(PAGES.map(([label]) => label));
    await expect(page.getByRole("button", { name: /^Menu:/ })).toBeHidden();
    const fits = await page.evaluate(() => {
      const name = document.querySelector(".whoami-name") as HTMLElement;
      const signOut = [...document.querySelectorAll("button")].find((b) => b.textContent === "Sign out")!;
      const line = parseFloat(getComputedStyle(signOut).lineHeight) || 20;
      return {
        nameWhole: name.scrollWidth <= name.clientWidth,
        name: name.textContent,
        signOutOneLine: signOut.getBoundingClientRect().height < line * 2,
        noOverflow: document.documentElement.scrollWidth <= window.innerWidth,
      };
    });
    expect(fits).toEqual({ nameWhole: true, name: "admin", signOutOneLine: true, noOverflow: true });
  });
}

for (const width of [360, 390, 768]) {
  test(`at ${width} px the bar fits on one line and the user's name is whole, in the bar or the menu`, async ({ page, server }) => {
    await page.setViewportSize({ width, height: 800 });
    await signIn(page);
    await server.post({ action: "deploy.finish", user: { id: "ops" } });
    // The explorer's bar holds the most: the live badge beside the chain's.
    await page.goto("/events");
    await expect(page.getByRole("status", { name: "Connection: live" })).toBeVisible();
    const fits = await page.evaluate(() => {
      const signOut = [...document.querySelectorAll("button")].find((b) => b.textContent === "Sign out")!;
      const line = parseFloat(getComputedStyle(signOut).lineHeight) || 20;
      const bar = document.querySelector(".topbar-inner") as HTMLElement;
      return {
        signOutOneLine: signOut.getBoundingClientRect().height < line * 2,
        barOneRow: bar.getBoundingClientRect().height < 80,
        noOverflow: document.documentElement.scrollWidth <= window.innerWidth,
      };
    });
    expect(fits).toEqual({ signOutOneLine: true, barOneRow: true, noOverflow: true });
    const name = page.locator(".whoami-name");
    if (await name.isVisible()) {
      await expect(name).toHaveText("admin");
      expect(await name.evaluate((n) => n.scrollWidth <= n.clientWidth)).toBe(true);
    } else {
      // The phone's bar leaves the name to the menu.
      await page.getByRole("button", { name: /^Menu:/ }).click();
      await expect(page.getByRole("navigation", { name: "Main" }).getByText("Signed in as admin")).toBeVisible();
    }
  });
}
