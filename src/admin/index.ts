export { AdminListener, type AdminListenerOptions } from './admin-listener.js';
