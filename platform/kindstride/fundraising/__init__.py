"""Fundraising: beneficiaries, sponsor pledges, donations and participants' fundraising pages."""
