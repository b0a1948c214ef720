import { defineConfig } from 'vite';

// Built into dist/viewer, which `kvpack view` serves; relative asset paths, nothing fetched from elsewhere.
export default defineConfig({
  base: './',
  build: { outDir: '../dist/viewer', emptyOutDir: true },
});
