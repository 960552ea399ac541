// The web UI's build: React + TypeScript through Vite's own JSX transform (no Babel plugin),
// into dist/web, which sluice serves. Everything is bundled: the page loads nothing from elsewhere.
import { defineConfig } from "vite";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));

export default defineConfig({
  root: here,
  base: "./",
  logLevel: "warn",
  build: {
    outDir: fileURLToPath(new URL("../dist/web", import.meta.url)),
    emptyOutDir: true,
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 1024,
  },
  oxc: { jsx: { runtime: "automatic" } },
});
