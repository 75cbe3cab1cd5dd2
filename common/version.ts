/** The package version (package.json's), for status, metrics and `botfleet --version`. */
export const VERSION = '0.1.0';
