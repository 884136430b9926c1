/*
 * RFC 7512 "pkcs11:" URIs beside Cryptoki's info structs (CK_INFO,
 * CK_SLOT_INFO, CK_TOKEN_INFO): fill a URI from their space-padded fields,
 * and match a URI against them.
 */
#include <stddef.h>
#include <string.h>

#include "pkcs11/uri.h"

/* --- construction ------------------------------------------------------- */

/* Length of a space-padded Cryptoki field without its padding (and
 * without anything after an embedded NUL, which some modules write). */
static size_t unpadded_len(const CK_UTF8CHAR *field, size_t field_len)
{
    const CK_UTF8CHAR *nul = memchr(field, '\0', field_len);
    size_t n = nul != NULL ? (size_t)(nul - field) : field_len;

    while (n > 0 && field[n - 1] == ' ')
        n--;
    return n;
}

int p11b_uri_set_padded(struct p11b_uri_value *v, const CK_UTF8CHAR *field,
                        size_t field_len)
{
    if (field == NULL)
        return -1;
    return p11b_uri_set_value(v, field, unpadded_len(field, field_len));
}

int p11b_uri_set_token_info(struct p11b_uri *uri, const CK_TOKEN_INFO *ti)
{
    if (uri == NULL || ti == NULL)
        return -1;
    if (p11b_uri_set_padded(&uri->token, ti->label, sizeof(ti->label)) != 0 ||
        p11b_uri_set_padded(&uri->manufacturer, ti->manufacturerID,
                            sizeof(ti->manufacturerID)) != 0 ||
        p11b_uri_set_padded(&uri->serial, ti->serialNumber,
                            sizeof(ti->serialNumber)) != 0 ||
        p11b_uri_set_padded(&uri->model, ti->model, sizeof(ti->model)) != 0)
        return -1;
    return 0;
}

/* --- matching ----------------------------------------------------------- */

/* Absent matches anything; present compares byte-exact to the unpadded
 * field. */
static int value_matches(const struct p11b_uri_value *v,
                         const CK_UTF8CHAR *field, size_t field_len)
{
    size_t n;

    if (!v->present)
        return 1;
    n = unpadded_len(field, field_len);
    return v->len == n && (n == 0 || memcmp(v->data, field, n) == 0);
}

int p11b_uri_match_library(const struct p11b_uri *uri, const CK_INFO *info)
{
    if (uri == NULL || info == NULL)
        return 0;
    if (uri->has_library_version &&
        (uri->library_version.major != info->libraryVersion.major ||
         uri->library_version.minor != info->libraryVersion.minor))
        return 0;
    return value_matches(&uri->library_manufacturer, info->manufacturerID,
                         sizeof(info->manufacturerID)) &&
           value_matches(&uri->library_description, info->libraryDescription,
                         sizeof(info->libraryDescription));
}

int p11b_uri_match_slot(const struct p11b_uri *uri, CK_SLOT_ID id,
                        const CK_SLOT_INFO *info)
{
    if (uri == NULL || info == NULL)
        return 0;
    if (uri->has_slot_id && uri->slot_id != id)
        return 0;
    return value_matches(&uri->slot_description, info->slotDescription,
                         sizeof(info->slotDescription)) &&
           value_matches(&uri->slot_manufacturer, info->manufacturerID,
                         sizeof(info->manufacturerID));
}

int p11b_uri_match_token(const struct p11b_uri *uri, const CK_TOKEN_INFO *ti)
{
    if (uri == NULL || ti == NULL)
        return 0;
    return value_matches(&uri->token, ti->label, sizeof(ti->label)) &&
           value_matches(&uri->manufacturer, ti->manufacturerID,
                         sizeof(ti->manufacturerID)) &&
           value_matches(&uri->serial, ti->serialNumber,
                         sizeof(ti->serialNumber)) &&
           value_matches(&uri->model, ti->model, sizeof(ti->model));
}
