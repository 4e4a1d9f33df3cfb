import "zmp-ui/zaui.css";
import "./css/app.css";

import { createRoot } from "react-dom/client";
import { Route } from "react-router-dom";
import { AnimationRoutes, App, ZMPRouter } from "zmp-ui";

import appConfig from "../app-config.json";
import { MembershipPage } from "./pages/membership";

// Inside Zalo the platform provides the configuration; elsewhere, our own file.
if (!window.APP_CONFIG) window.APP_CONFIG = appConfig;

// One page, so a memory router: it matches whatever path the page is served under (Zalo's own,
// or /miniapp/ of `loyalty serve`).
createRoot(document.getElementById("app")!).render(
  <App>
    <ZMPRouter memoryRouter>
      <AnimationRoutes>
        <Route path="/" element={<MembershipPage />} />
      </AnimationRoutes>
    </ZMPRouter>
  </App>,
);
