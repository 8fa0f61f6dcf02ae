# Placeholder for the guest's /usr/lib/perl5/vendor_perl/5.26.1/Mail/SpamAssassin.pm
# (perl-Mail-SpamAssassin 3.4.5 on Leap 15.6; Leap's perl is 5.26.1).
#
# Only the head of the module is reproduced, in our own words, so that a
# static reader can find the version the way the real file states it.  The
# version is in perl's $] format: 3.004005 = 3.4.5.  sa-update derives its
# update directory (/var/lib/spamassassin/3.004005) and the DNS name it asks
# (5.4.3.updates.spamassassin.org) from it.  Never executed.

package Mail::SpamAssassin;
use strict;
use warnings;

our $VERSION = "3.004005";      # bumped by the release process, perl $] format
our $IS_DEVEL_BUILD = 0;        # release build

our @EXTRA_VERSION = qw();

1;
