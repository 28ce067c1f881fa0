/* reconcile/banned.h: calls that are unbounded or block the loop do not
 * compile. */
#ifndef KC_RECONCILE_BANNED_H
#define KC_RECONCILE_BANNED_H

#define KC_BANNED(func) sorry_##func##_is_a_banned_function

#undef sprintf
#define sprintf(...) KC_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) KC_BANNED(vsprintf)
#undef strcpy
#define strcpy(x, y) KC_BANNED(strcpy)
#undef strcat
#define strcat(x, y) KC_BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) KC_BANNED(strncpy)
#undef strncat
#define strncat(x, y, n) KC_BANNED(strncat)
#undef strtok
#define strtok(x, y) KC_BANNED(strtok)
#undef gets
#define gets(x) KC_BANNED(gets)
#undef atoi
#define atoi(x) KC_BANNED(atoi)
#undef system
#define system(x) KC_BANNED(system)
#undef sleep
#define sleep(x) KC_BANNED(sleep)

#endif
