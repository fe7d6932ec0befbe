import { loadConfigFile } from '../config/index.js';

/** Throws the config's errors; prints a one-line summary when it is valid. */
export function runValidate(file: string): void {
  const config = loadConfigFile(file);
  const routes = config.sites.reduce((n, s) => n + s.routes.length, 0);
  const certificates = config.sites.reduce((n, s) => n + s.certificates.length, 0);
  process.stdout.write(
    `${config.source} is valid: ${config.sites.length} site(s), ${routes} route(s), ${certificates} certificate(s), TLS profile ${config.tls.profile.name}\n`,
  );
}
