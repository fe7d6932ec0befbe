export { HttpsListener } from './https-listener.js';
