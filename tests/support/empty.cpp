// Keeps the support library non-empty before other sources exist.
namespace astroflow::test_support_anchor {
int anchor = 0;
}
