export { loadConfigFile, parseConfigText, buildConfig } from './load-config.js';
export { readLeniently, type LenientRead, type InternalSite } from './lenient-read.js';
export { quickstart, type Quickstart } from './quickstart.js';
export { configJsonSchema } from './schema.js';
export { tlsProfiles, type TlsProfile } from './tls-profiles.js';
export { hostFromAuthority, formatHostPort, hasDuplicateHost, sameAddress, type ListenAddress } from './addresses.js';
export type * from './types.js';
export { normalisePath, type PathResult } from './url-path.js';
export { durationMs, durationPattern } from './durations.js';
