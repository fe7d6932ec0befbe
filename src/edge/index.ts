export { HttpsListener, type HelloRefusal, type HelloRouter, type HttpsListenerOptions, type RefusalReporter, type SourceGuard } from './https-listener.js';
export { parseClientHello, highestOfferedVersion, versionName, type ClientHello, type HelloParse } from './client-hello.js';
export { endWithLinger } from './linger.js';
export { RedirectListener, type ChallengeResponder } from './redirect-listener.js';
export { bindServer } from './bind.js';
export { helloSummaryOf, ja3, ja4, type HelloSummary } from './fingerprints.js';
export type { WeakOffer } from './weak-offer.js';
