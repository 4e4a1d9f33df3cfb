/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** Base URL of the loyalty API, e.g. https://loyalty.example.vn (no trailing slash needed). */
  readonly VITE_LOYALTY_API: string;
}

interface Window {
  APP_CONFIG?: unknown;
}
