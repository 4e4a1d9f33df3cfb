import react from "@vitejs/plugin-react";
import { defineConfig, loadEnv } from "vite";
import zaloMiniApp from "zmp-vite-plugin";

// `vite build --mode development` is the build for a desktop browser (it may take the token
// from the page's URL), `--mode production` the one for Zalo; see src/sign-in.ts.
export default defineConfig(({ mode }) => {
  const api = loadEnv(mode, ".", "VITE_").VITE_LOYALTY_API ?? "";
  if (!/^https?:\/\/[^/]+/.test(api)) {
    throw new Error(
      `VITE_LOYALTY_API must be the loyalty API's base URL (http:// or https://), got "${api}"`,
    );
  }
  return {
    // The page is served under a sub-path (`loyalty serve --miniapp` puts it at /miniapp/),
    // and Zalo serves it from its own; relative asset URLs work in both.
    base: "./",
    plugins: [react(), zaloMiniApp()],
    // zmp-vite-plugin writes Zalo's app-config.json (the files to load) next to the bundle;
    // `www` is where zmp-cli deploys from.
    build: { outDir: mode === "development" ? "dist" : "www" },
  };
});
