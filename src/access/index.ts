export { apiKeyPrefix, newApiKey, hashApiKey, apiKeyIdOf } from './api-key-format.js';
export { readApiKeys, writeApiKeys, type ApiKeyRecord } from './api-key-store.js';
export { ApiKeyRing, presentedApiKey, type KeyVerdict } from './api-keys.js';
export { ipAdmitted, type IpRules } from './ip-lists.js';
export { storedApiKey } from './api-key-store.js';
export { readSharedApiKeys, putSharedApiKeys, joinApiKeys, type SharedApiKeys } from './shared-api-keys.js';
